/*-------------------------------------------------------------------------
 *
 * outbox.h
 *	  The only code that reads and writes pagerduty_outbox: enqueue, the
 *	  worker's claim and record, retry, wait and retention.
 *
 *	  Callers are connected to SPI with the extension's schema on the
 *	  search_path (the SQL functions are declared with it; the worker sets
 *	  it for each of its transactions).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAGERDUTY_OUTBOX_H
#define PAGERDUTY_OUTBOX_H

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

#include "payload.h"

/* An event the claim query found due, with its service's routing key. */
typedef struct PdCandidate
{
	int64		id;
	char	   *service;
	PdAction	action;
	char	   *dedup_key;		/* NULL for change events */
	char	   *body;			/* stored body, routing key left out */
	int			body_len;
	int			attempts;		/* attempts made before this one */
	char	   *routing_key;	/* NULL: the service no longer exists */
	char	   *events_url;		/* the service's own URL, or NULL */
} PdCandidate;

/* The outcome of an attempt (or of a decision not to attempt). */
typedef struct PdOutcome
{
	int64		id;
	const char *status;			/* "pending", "delivered" or "failed" */
	int			http_status;	/* 0: none (network error, not sent) */
	char	   *last_error;		/* NULL: none */
	TimestampTz next_attempt_at;	/* for "pending": when to try again */
	bool		refund_attempt; /* the attempt does not count (429, not sent) */
	TimestampTz at;				/* when the outcome was known */
} PdOutcome;

/* enqueue */
extern int64 pd_outbox_insert(const char *service, PdAction action,
							  const char *dedup_key, const char *severity,
							  Jsonb *event, const char *body, int body_len);

/* for pagerduty_retry() and pagerduty_wait() */
extern int64 pd_outbox_retry(bool all, int64 id, int64 *skipped);
extern bool pd_outbox_any_due(TimestampTz now);

/* for the worker */
extern int	pd_outbox_candidates(int limit, MemoryContext cxt,
								 PdCandidate **out);
extern void pd_outbox_claim(const int64 *ids, int n);
extern void pd_outbox_defer(const int64 *ids, const TimestampTz *at, int n);
extern void pd_outbox_record(const PdOutcome *outcomes, int n);
extern uint64 pd_outbox_release_claims(void);
extern TimestampTz pd_outbox_next_due(void);
extern uint64 pd_outbox_purge(int retention_s, int limit);

#endif							/* PAGERDUTY_OUTBOX_H */
