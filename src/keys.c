/*-------------------------------------------------------------------------
 *
 * keys.c
 *	  Per routing key state: rate limit and 429 pause.
 *
 *	  Rate limit: at most pagerduty.rate_limit events in any 60 seconds per
 *	  routing key, PagerDuty's own rule, kept with a sliding window of the
 *	  last rate_limit times a request started (plus a second of guard, as
 *	  PagerDuty counts arrivals).  A burst goes out at once up to the limit;
 *	  beyond it, an event waits until the oldest send leaves the window.
 *
 *	  Pause: after a 429 the key sends nothing until Retry-After has passed,
 *	  or, without that header, for 5 s, doubling with each further 429 up to
 *	  5 minutes.  Other keys go on.
 *
 *	  An event that may not go now is deferred in the outbox to the time it
 *	  can; deferred events of a key are given slots spaced by the key's
 *	  average interval (60 s / rate_limit), so a backlog is spread out
 *	  instead of being claimed and deferred again at every round.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "keys.h"
#include "payload.h"

#define PD_WINDOW_USECS			(60 * USECS_PER_SEC)
/* an event replaces one that left the window this much later, for the
 * network's jitter: PagerDuty counts arrivals, we count sends */
#define PD_WINDOW_GUARD_USECS	(1 * USECS_PER_SEC)
#define PD_PAUSE_MIN_MS			5000
#define PD_PAUSE_MAX_MS			(5 * 60 * 1000)
#define PD_RETRY_AFTER_MAX_S	3600
#define PD_KEY_IDLE_MS			(10 * 60 * 1000)

struct PdKey
{
	char		routing_key[PD_ROUTING_KEY_LEN + 1];	/* hash key */
	TimestampTz paused_until;
	int			throttle_streak;	/* 429s in a row without Retry-After */
	TimestampTz next_deferral;	/* the earliest slot left for a deferred event */
	TimestampTz last_used;
	int			reserved;		/* admitted, not sent yet */
	/* ring of the last send times, oldest at 'start' */
	int			capacity;
	int			start;
	int			count;
	TimestampTz *sends;
};

static HTAB *keys = NULL;
static MemoryContext keys_cxt = NULL;

void
pd_keys_init(void)
{
	HASHCTL		ctl;

	keys_cxt = AllocSetContextCreate(TopMemoryContext, "pagerduty keys",
									 ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = PD_ROUTING_KEY_LEN + 1;
	ctl.entrysize = sizeof(PdKey);
	ctl.hcxt = keys_cxt;
	keys = hash_create("pagerduty keys", 64, &ctl,
					   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

PdKey *
pd_key_get(const char *routing_key)
{
	char		k[PD_ROUTING_KEY_LEN + 1];
	PdKey	   *key;
	bool		found;

	strlcpy(k, routing_key, sizeof(k));
	key = hash_search(keys, k, HASH_ENTER, &found);
	if (!found)
	{
		key->paused_until = 0;
		key->throttle_streak = 0;
		key->next_deferral = 0;
		key->last_used = 0;
		key->reserved = 0;
		key->capacity = 0;
		key->start = 0;
		key->count = 0;
		key->sends = NULL;
	}
	return key;
}

/* Make the ring hold exactly 'limit' sends, keeping the newest ones. */
static void
resize(PdKey *key, int limit)
{
	TimestampTz *sends;
	int			keep;

	if (key->capacity == limit)
		return;
	sends = MemoryContextAlloc(keys_cxt, sizeof(TimestampTz) * limit);
	keep = Min(key->count, limit);
	for (int i = 0; i < keep; i++)
		sends[i] = key->sends[(key->start + key->count - keep + i) % key->capacity];
	if (key->sends)
		pfree(key->sends);
	key->sends = sends;
	key->capacity = limit;
	key->start = 0;
	key->count = keep;
}

/*
 * Hand out the next deferral slot: not before 'earliest', and spaced by the
 * key's average interval after the slots already handed out, so that a
 * backlog is spread over the coming minutes rather than piled on the same
 * instant and deferred again.
 */
static TimestampTz
defer_slot(PdKey *key, TimestampTz earliest, int rate_limit)
{
	int64		spacing = rate_limit > 0 ? PD_WINDOW_USECS / rate_limit : 10000;
	TimestampTz slot = Max(earliest, key->next_deferral);

	key->next_deferral = slot + spacing;
	return slot;
}

/* Forget the sends that have left the window (with its guard). */
static void
expire(PdKey *key, TimestampTz now)
{
	while (key->count > 0 &&
		   key->sends[key->start] <= now - PD_WINDOW_USECS - PD_WINDOW_GUARD_USECS)
	{
		key->start = (key->start + 1) % key->capacity;
		key->count--;
	}
}

/*
 * May an event of this key be sent at 'now'?  Returns 0 and reserves a
 * place in the window if so (pd_key_sent() or pd_key_unreserve() settles
 * it); otherwise the time to defer it to.  The window counts the times
 * requests actually started, not the times they were claimed: a claimed
 * event may wait for a connection.
 */
TimestampTz
pd_key_admit(PdKey *key, TimestampTz now, int rate_limit)
{
	key->last_used = now;

	if (now < key->paused_until)
		return defer_slot(key, key->paused_until, rate_limit);
	if (rate_limit <= 0)
		return 0;

	resize(key, rate_limit);
	expire(key, now);
	if (key->count + key->reserved < rate_limit)
	{
		key->reserved++;
		return 0;
	}

	/*
	 * Full: not before the oldest send leaves the window (reserved places
	 * are about to be sent: they leave it a minute from now).
	 */
	return defer_slot(key, (key->count > 0 ? key->sends[key->start] : now) +
					  PD_WINDOW_USECS + PD_WINDOW_GUARD_USECS,
					  rate_limit);
}

/* A request of this key started at 'when'. */
void
pd_key_sent(PdKey *key, TimestampTz when)
{
	if (key->reserved > 0)
		key->reserved--;
	if (key->capacity == 0)
		return;					/* no limit */
	if (key->count == key->capacity)
	{
		/* the limit was lowered meanwhile: the oldest goes */
		key->start = (key->start + 1) % key->capacity;
		key->count--;
	}
	key->sends[(key->start + key->count) % key->capacity] = when;
	key->count++;
}

/* An admitted event will not be sent after all. */
void
pd_key_unreserve(PdKey *key)
{
	if (key->reserved > 0)
		key->reserved--;
}

/* Every admitted event was dropped (the outbox went away). */
void
pd_keys_unreserve_all(void)
{
	HASH_SEQ_STATUS status;
	PdKey	   *key;

	hash_seq_init(&status, keys);
	while ((key = hash_seq_search(&status)) != NULL)
		key->reserved = 0;
}

/* PagerDuty answered 429: pause the key. */
void
pd_key_throttled(PdKey *key, TimestampTz now, long retry_after_s)
{
	int64		pause_ms;

	if (retry_after_s > 0)
		pause_ms = Min(retry_after_s, PD_RETRY_AFTER_MAX_S) * 1000;
	else
	{
		/* the answers to requests sent together count as one 429 */
		if (now < key->paused_until)
			return;
		pause_ms = (int64) PD_PAUSE_MIN_MS << Min(key->throttle_streak, 16);
		pause_ms = Min(pause_ms, PD_PAUSE_MAX_MS);
		key->throttle_streak++;
	}
	key->paused_until = Max(key->paused_until,
							TimestampTzPlusMilliseconds(now, pause_ms));
}

void
pd_key_accepted(PdKey *key)
{
	key->throttle_streak = 0;
}

TimestampTz
pd_key_paused_until(PdKey *key)
{
	return key->paused_until;
}

/* Forget keys that have been idle for a while (keys of removed services). */
void
pd_keys_forget_idle(TimestampTz now)
{
	HASH_SEQ_STATUS status;
	PdKey	   *key;
	TimestampTz idle_before = TimestampTzPlusMilliseconds(now, -PD_KEY_IDLE_MS);

	hash_seq_init(&status, keys);
	while ((key = hash_seq_search(&status)) != NULL)
	{
		if (key->last_used < idle_before && key->paused_until < now &&
			key->reserved == 0)
		{
			if (key->sends)
				pfree(key->sends);
			hash_search(keys, key->routing_key, HASH_REMOVE, NULL);
		}
	}
}
