/*-------------------------------------------------------------------------
 *
 * keys.h
 *	  Per routing key state in the worker: the rate limiter and the pause
 *	  after a 429.  In-memory only; what must survive a restart is in the
 *	  outbox (next_attempt_at).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAGERDUTY_KEYS_H
#define PAGERDUTY_KEYS_H

#include "datatype/timestamp.h"

typedef struct PdKey PdKey;

extern void pd_keys_init(void);
extern PdKey *pd_key_get(const char *routing_key);
extern TimestampTz pd_key_admit(PdKey *key, TimestampTz now, int rate_limit);
extern void pd_key_sent(PdKey *key, TimestampTz when);
extern void pd_key_unreserve(PdKey *key);
extern void pd_keys_unreserve_all(void);
extern void pd_key_throttled(PdKey *key, TimestampTz now, long retry_after_s);
extern void pd_key_accepted(PdKey *key);
extern TimestampTz pd_key_paused_until(PdKey *key);
extern void pd_keys_forget_idle(TimestampTz now);

#endif							/* PAGERDUTY_KEYS_H */
