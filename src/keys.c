/*-------------------------------------------------------------------------
 *
 * keys.c
 *	  Per routing key state: rate limit and 429 pause.
 *
 *	  Rate limit: at most pagerduty.rate_limit events in any 60 seconds per
 *	  routing key, PagerDuty's own rule, kept exactly with a sliding window
 *	  of the last rate_limit send times.  A burst goes out at once up to the
 *	  limit; beyond it, an event waits until the oldest send leaves the
 *	  window.
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

/*
 * May an event of this key be sent at 'now'?  Returns 0 and counts the send
 * if so; otherwise the time to defer it to.
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
	while (key->count > 0 && key->sends[key->start] <= now - PD_WINDOW_USECS)
	{
		key->start = (key->start + 1) % key->capacity;
		key->count--;
	}
	if (key->count < rate_limit)
	{
		key->sends[(key->start + key->count) % key->capacity] = now;
		key->count++;
		return 0;
	}

	/* full: not before the oldest send leaves the window */
	return defer_slot(key, key->sends[key->start] + PD_WINDOW_USECS + 1000, rate_limit);
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
		if (key->last_used < idle_before && key->paused_until < now)
		{
			if (key->sends)
				pfree(key->sends);
			hash_search(keys, key->routing_key, HASH_REMOVE, NULL);
		}
	}
}
