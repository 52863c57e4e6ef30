/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The delivery worker: claim due events, send them, record outcomes.
 *
 *	  The transaction scheme: a short claim, a lease, a second transaction
 *	  to record.
 *
 *	  1. Claim (one short transaction): lock due queue heads FOR UPDATE
 *	     SKIP LOCKED, count an attempt and set claimed_at on those the rate
 *	     limiter admits, push the others' next_attempt_at to when their key
 *	     may send, commit.
 *	  2. Send, outside any transaction, up to max_connections at once.  No
 *	     lock is held while waiting on the network, so DROP EXTENSION, DROP
 *	     DATABASE and VACUUM never wait for PagerDuty.
 *	  3. Record (one short transaction per few milliseconds of outcomes):
 *	     delivered, failed, or pending again with the time of the retry;
 *	     claimed_at is cleared.
 *
 *	  Why nothing is lost: a row stops being 'pending' only in step 3, after
 *	  PagerDuty answered.  If the worker or the server dies anywhere before
 *	  step 3 commits, the row is still pending with claimed_at set; only one
 *	  worker ever serves a database (the launcher starts the next one only
 *	  after the previous one has exited), so the next worker puts every
 *	  claimed row back at start and sends it again, with the same dedup key:
 *	  at least once, and the duplicate updates the same PagerDuty alert.  A
 *	  promoted standby does the same with the claims it replayed.
 *
 *	  Order: only queue heads are claimed, and a claimed head stays pending
 *	  until recorded, so the next event of the same service and dedup key is
 *	  claimed only after its predecessor's outcome is recorded, including a
 *	  retry's wait.
 *
 *	  Memory is bounded whatever the backlog: at most batch_size events are
 *	  claimed per round (and at most PD_CLAIM_BYTES of bodies), and a new
 *	  round starts only when fewer than max_connections are waiting to go.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "lib/ilist.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "http.h"
#include "keys.h"
#include "outbox.h"
#include "pagerduty.h"
#include "payload.h"
#include "settings.h"
#include "worker.h"

/* the safety-net poll: commits wake the worker, this catches the rest */
#define PD_POLL_MS				5000
/* how long to wait for CREATE EXTENSION between looks */
#define PD_NO_EXTENSION_MS		10000
/* gather outcomes for this long before recording them */
#define PD_RECORD_DELAY_MS		10
#define PD_RECORD_BATCH			256
/* after an error, or a lock held by DDL, wait this long */
#define PD_BACKOFF_MS			1000
#define PD_PURGE_EVERY_MS		60000
#define PD_PURGE_BATCH			1000
/* at most this many bytes of bodies claimed per round */
#define PD_CLAIM_BYTES			(16 * 1024 * 1024)
/* retries: 2 s, 4 s, 8 s ... up to 10 minutes, each with jitter */
#define PD_RETRY_BASE_MS		2000
#define PD_RETRY_MAX_MS			(10 * 60 * 1000)

/* A claimed event, from claim to outcome. */
typedef struct Job
{
	dlist_node	node;			/* in 'ready' until started */
	MemoryContext cxt;			/* holds the job and all it points to */
	int64		id;
	PdAction	action;
	int			attempts;		/* including this one */
	char	   *service;
	char	   *routing_key;
	char	   *url;
	char	   *body;			/* with the routing key */
	int			body_len;
	PdHttpRequest req;
} Job;

typedef enum TxnStart
{
	TXN_OK,
	TXN_NO_EXTENSION,
	TXN_BUSY					/* DDL holds a lock on our tables */
} TxnStart;

static MemoryContext jobs_cxt;
static MemoryContext outcomes_cxt;
static MemoryContext claim_cxt;
static MemoryContext loop_cxt;

static dlist_head ready = DLIST_STATIC_INIT(ready);
static int	n_ready = 0;

/* jobs of a claim whose transaction has not committed (yet) */
static dlist_head uncommitted = DLIST_STATIC_INIT(uncommitted);

static PdOutcome *outcomes = NULL;
static int	n_outcomes = 0;
static int	max_outcomes = 0;
static TimestampTz first_outcome_at = 0;

static Oid	served_extension = InvalidOid;	/* the extension we serve */
static bool extension_missing = false;
static bool want_claim = true;
static TimestampTz next_due = 0;
static TimestampTz next_poll = 0;
static TimestampTz next_purge = 0;
static TimestampTz backoff_until = 0;
static int	last_error_code = 0;

/* ----------------------------------------------------------------
 *		Small helpers
 * ----------------------------------------------------------------
 */

static void
worker_detach(int code, Datum arg)
{
	SpinLockAcquire(&pd_shared->mutex);
	if (pd_shared->worker_pid == MyProcPid)
	{
		pd_shared->worker_pid = 0;
		pd_shared->worker_latch = NULL;
		pd_shared->worker_dboid = InvalidOid;
	}
	SpinLockRelease(&pd_shared->mutex);
}

static void
configure_http(void)
{
	PdHttpSettings s;

	s.max_connections = pd_max_connections;
	s.connect_timeout_ms = pd_connect_timeout_ms;
	s.request_timeout_ms = pd_request_timeout_ms;
	s.proxy = pd_proxy;
	s.ca_file = pd_ca_file;
	pd_http_configure(&s);
}

/* "...ab12": the most of a routing key that may be shown */
static char *
key_hint(const char *routing_key)
{
	size_t		len = strlen(routing_key);

	return psprintf("...%s", len >= 4 ? routing_key + len - 4 : "");
}

/*
 * Text from the network made safe to store and log: valid in the database
 * encoding, no control characters, at most 1000 bytes, and no routing key.
 */
static char *
clean_error(const char *text, const char *routing_key)
{
	StringInfoData buf;
	const char *p;
	size_t		klen = routing_key ? strlen(routing_key) : 0;

	initStringInfo(&buf);
	for (p = text; *p && buf.len < 1000;)
	{
		if (klen > 0 && strncmp(p, routing_key, klen) == 0)
		{
			appendStringInfoString(&buf, key_hint(routing_key));
			p += klen;
		}
		else if ((unsigned char) *p < 0x20 || *p == 0x7f)
		{
			appendStringInfoChar(&buf, ' ');
			p++;
		}
		else
			appendStringInfoChar(&buf, *p++);
	}
	if (!pg_verifymbstr(buf.data, buf.len, true))
	{
		for (int i = 0; i < buf.len; i++)
		{
			if (IS_HIGHBIT_SET(buf.data[i]))
				buf.data[i] = '?';
		}
	}
	return buf.data;
}

static void
add_outcome(int64 id, const char *status, int http_status, const char *error,
			TimestampTz next_attempt_at, bool refund_attempt)
{
	PdOutcome  *o;
	MemoryContext old = MemoryContextSwitchTo(outcomes_cxt);

	if (n_outcomes == max_outcomes)
	{
		max_outcomes = Max(64, max_outcomes * 2);
		outcomes = outcomes ? repalloc(outcomes, sizeof(PdOutcome) * max_outcomes)
			: palloc(sizeof(PdOutcome) * max_outcomes);
	}
	o = &outcomes[n_outcomes++];
	o->id = id;
	o->status = status;
	o->http_status = http_status;
	o->last_error = error ? pstrdup(error) : NULL;
	o->next_attempt_at = next_attempt_at;
	o->refund_attempt = refund_attempt;
	o->at = GetCurrentTimestamp();
	if (n_outcomes == 1)
		first_outcome_at = o->at;
	MemoryContextSwitchTo(old);
}

static void
forget_outcomes(void)
{
	MemoryContextReset(outcomes_cxt);
	outcomes = NULL;
	n_outcomes = max_outcomes = 0;
}

/* Free the jobs of a claim that did not commit. */
static void
drop_uncommitted(void)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &uncommitted)
	{
		Job		   *job = dlist_container(Job, node, iter.cur);

		pd_key_unreserve(pd_key_get(job->routing_key));
		dlist_delete(&job->node);
		MemoryContextDelete(job->cxt);
	}
}

/* Drop everything claimed from an outbox that is gone. */
static void
forget_local_state(void)
{
	pd_http_cancel_all();
	MemoryContextReset(jobs_cxt);
	dlist_init(&ready);
	dlist_init(&uncommitted);
	n_ready = 0;
	pd_keys_unreserve_all();
	forget_outcomes();
	next_due = 0;
}

/* ----------------------------------------------------------------
 *		Transactions
 * ----------------------------------------------------------------
 */

/* The pagerduty extension's OID and schema in this database, if created. */
static Oid
find_extension(Oid *nsp)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			oid = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("pagerduty"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		oid = ((Form_pg_extension) GETSTRUCT(tup))->oid;
		*nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return oid;
}

/*
 * Start a transaction on the outbox.  The locks are taken conditionally:
 * if DDL (DROP EXTENSION, ALTER EXTENSION, VACUUM FULL, ...) holds or
 * waits for a conflicting lock, the worker steps aside and tries later
 * instead of queueing in front of everyone else.  The search_path is set
 * to the extension's schema for this transaction only.
 */
static TxnStart
begin_txn(const char *activity)
{
	Oid			nsp = InvalidOid;
	Oid			ext;
	Oid			outbox;
	Oid			services;
	char	   *nspname;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	pgstat_report_activity(STATE_RUNNING, activity);

	ext = find_extension(&nsp);
	if (!OidIsValid(ext))
		return TXN_NO_EXTENSION;
	outbox = get_relname_relid("pagerduty_outbox", nsp);
	services = get_relname_relid("pagerduty_services", nsp);
	if (!OidIsValid(outbox) || !OidIsValid(services))
		return TXN_NO_EXTENSION;
	if (!ConditionalLockRelationOid(outbox, RowExclusiveLock) ||
		!ConditionalLockRelationOid(services, AccessShareLock))
		return TXN_BUSY;

	nspname = get_namespace_name(nsp);
	if (nspname == NULL)
		return TXN_NO_EXTENSION;	/* its schema was just dropped */
	(void) set_config_option("search_path",
							 psprintf("%s, pg_temp", quote_identifier(nspname)),
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);

	if (ext != served_extension)
	{
		uint64		released;

		/* a new extension (first start, or dropped and created again) */
		forget_local_state();
		served_extension = ext;
		released = pd_outbox_release_claims();
		if (released > 0)
			ereport(LOG,
					(errmsg("pagerduty: %llu events that were in flight when the previous worker stopped will be sent again",
							(unsigned long long) released)));
	}
	extension_missing = false;
	return TXN_OK;
}

static void
end_txn(bool commit)
{
	SPI_finish();
	PopActiveSnapshot();
	if (commit)
		CommitTransactionCommand();
	else
		AbortCurrentTransaction();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Begin, or deal with not being able to: no extension means nothing to
 * serve (and anything claimed from a dropped one is forgotten); a lock we
 * could not get means try again in a moment.
 */
static bool
begin_or_step_aside(const char *activity)
{
	TxnStart	st = begin_txn(activity);

	if (st == TXN_OK)
		return true;
	end_txn(false);
	if (st == TXN_NO_EXTENSION)
	{
		if (OidIsValid(served_extension))
			forget_local_state();
		served_extension = InvalidOid;
		extension_missing = true;
	}
	else
	{
		backoff_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), PD_BACKOFF_MS);
		want_claim = true;		/* once the back-off is over */
	}
	return false;
}

/*
 * Run one unit of work in a transaction.  An error is logged (once while
 * it repeats), the transaction is rolled back, and the worker carries on
 * after a pause instead of exiting.
 */
static void
run_txn(void (*work) (void))
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		work();
		last_error_code = 0;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);

		ereport(last_error_code == edata->sqlerrcode ? DEBUG1 : WARNING,
				(errmsg("pagerduty worker: %s", edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
		last_error_code = edata->sqlerrcode;
		FreeErrorData(edata);
		backoff_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), PD_BACKOFF_MS);
		want_claim = true;		/* once the back-off is over */
	}
	PG_END_TRY();

	/* committing or aborting left us in TopMemoryContext: back to the loop's */
	MemoryContextSwitchTo(cxt);
}

/* ----------------------------------------------------------------
 *		Claim
 * ----------------------------------------------------------------
 */

static Job *
make_job(PdCandidate *c, const char *url)
{
	MemoryContext cxt = AllocSetContextCreate(jobs_cxt, "pagerduty job",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Job		   *job = palloc0(sizeof(Job));

	job->cxt = cxt;
	job->id = c->id;
	job->action = c->action;
	job->attempts = c->attempts + 1;
	job->service = pstrdup(c->service);
	job->routing_key = pstrdup(c->routing_key);
	job->url = pstrdup(url);
	job->body = pd_body_with_routing_key(c->body, c->body_len, c->routing_key,
										 &job->body_len);
	MemoryContextSwitchTo(old);
	return job;
}

/* An event fails for good: logged (an alert is lost), and recorded. */
static void
fail_event(int64 id, const char *service, int http_status, const char *why)
{
	ereport(WARNING,
			(errmsg("pagerduty: event %lld for service \"%s\" failed: %s",
					(long long) id, service, why)));
	add_outcome(id, "failed", http_status, why, 0, false);
}

/*
 * One claim round.  The candidates are due queue heads, oldest due first;
 * each is claimed (rate limiter permitting), deferred, or failed at once
 * when it cannot be sent at all.
 */
static void
claim(void)
{
	PdCandidate *cands;
	int			n;
	int			n_admitted = 0;
	int			n_deferred = 0;
	int64	   *claim_ids;
	int64	   *defer_ids;
	TimestampTz *defer_at;
	Size		bytes = 0;
	bool		more = false;
	TimestampTz now;
	int			failed_before = n_outcomes;

	MemoryContextReset(claim_cxt);
	drop_uncommitted();			/* a claim that failed to commit claimed nothing */
	/* nothing claimed is left anywhere: no place in any window is reserved */
	if (n_ready == 0 && pd_http_in_flight() == 0)
		pd_keys_unreserve_all();
	if (!begin_or_step_aside("claiming events"))
		return;

	n = pd_outbox_candidates(pd_batch_size, claim_cxt, &cands);
	claim_ids = MemoryContextAlloc(claim_cxt, sizeof(int64) * Max(n, 1));
	defer_ids = MemoryContextAlloc(claim_cxt, sizeof(int64) * Max(n, 1));
	defer_at = MemoryContextAlloc(claim_cxt, sizeof(TimestampTz) * Max(n, 1));

	now = GetCurrentTimestamp();
	for (int i = 0; i < n; i++)
	{
		PdCandidate *c = &cands[i];
		const char *url;
		TimestampTz at;

		if (c->routing_key == NULL)
		{
			fail_event(c->id, c->service, 0,
					   psprintf("service \"%s\" no longer exists", c->service));
			continue;
		}
		url = c->events_url ? c->events_url : pd_events_url;
		if (c->action == PD_ACTION_CHANGE)
		{
			char	   *change_url = pd_change_events_url(url);

			if (change_url == NULL)
			{
				fail_event(c->id, c->service, 0,
						   "cannot send a change event: the events URL does not end in /enqueue");
				continue;
			}
			url = MemoryContextStrdup(claim_cxt, change_url);
		}
		if (bytes > 0 && bytes + c->body_len > PD_CLAIM_BYTES)
		{
			more = true;		/* the rest stays unclaimed for the next round */
			break;
		}

		at = pd_key_admit(pd_key_get(c->routing_key), now, pd_rate_limit);
		if (at != 0)
		{
			defer_ids[n_deferred] = c->id;
			defer_at[n_deferred++] = at;
			continue;
		}
		/* a job at once, so that a failure from here on gives back its place */
		claim_ids[n_admitted++] = c->id;
		dlist_push_tail(&uncommitted, &make_job(c, url)->node);
		bytes += c->body_len;
	}

	pd_outbox_claim(claim_ids, n_admitted);
	pd_outbox_defer(defer_ids, defer_at, n_deferred);
	if (n_outcomes > failed_before)
	{
		pd_outbox_record(outcomes + failed_before, n_outcomes - failed_before);
		n_outcomes = failed_before;
	}
	next_due = pd_outbox_next_due();

	/*
	 * The jobs are ready before the claims commit: once they are committed,
	 * nothing may fail between them and the sends, or rows would stay
	 * claimed by a worker that forgot them.
	 */
	end_txn(true);

	/* claimed for good: these may go now */
	while (!dlist_is_empty(&uncommitted))
	{
		dlist_push_tail(&ready, dlist_pop_head_node(&uncommitted));
		n_ready++;
	}
	want_claim = more || n == pd_batch_size;
	if (n_admitted > 0 || n_deferred > 0)
		elog(DEBUG1, "pagerduty: claimed %d events, deferred %d", n_admitted, n_deferred);
}

/* ----------------------------------------------------------------
 *		Send
 * ----------------------------------------------------------------
 */

/* When to try again after the given number of failed attempts. */
static TimestampTz
retry_time(int attempts, TimestampTz now)
{
	int64		delay_ms = (int64) PD_RETRY_BASE_MS << Min(attempts - 1, 20);

	delay_ms = Min(delay_ms, PD_RETRY_MAX_MS);
	/* jitter: anywhere in the upper half, so retries of many events spread out */
	delay_ms = delay_ms / 2 + (int64) (pg_prng_double(&pg_global_prng_state) * (delay_ms / 2));
	return TimestampTzPlusMilliseconds(now, delay_ms);
}

/* A failure worth retrying, unless the attempts are used up. */
static void
retry_or_fail(Job *job, int http_status, const char *error, TimestampTz now)
{
	if (job->attempts >= pd_max_attempts)
	{
		fail_event(job->id, job->service, http_status,
				   psprintf("gave up after %d attempts: %s", job->attempts, error));
	}
	else
	{
		elog(DEBUG1, "pagerduty: event %lld will be retried: %s", (long long) job->id, error);
		add_outcome(job->id, "pending", http_status, error,
					retry_time(job->attempts, now), false);
	}
}

/* What an answer (or its absence) means for the event. */
static void
judge(Job *job)
{
	PdHttpRequest *req = &job->req;
	PdKey	   *key = pd_key_get(job->routing_key);
	TimestampTz now = GetCurrentTimestamp();
	char	   *reason;

	if (req->curl_code != 0)
	{
		reason = clean_error(psprintf("%s%s%s", req->curl_message,
									  req->error[0] ? ": " : "", req->error),
							 job->routing_key);
		if (pd_http_error_is_permanent(req->curl_code))
			fail_event(job->id, job->service, 0, reason);
		else
			retry_or_fail(job, 0, reason, now);
		return;
	}

	if (req->status >= 200 && req->status < 300)
	{
		pd_key_accepted(key);
		add_outcome(job->id, "delivered", (int) req->status, NULL, 0, false);
		return;
	}

	reason = pd_response_errors(req->response, req->response_len);
	reason = clean_error(psprintf("HTTP %ld: %s", req->status,
								  reason ? reason : req->response),
						 job->routing_key);

	if (req->status == 429)
	{
		/*
		 * The key pauses; the event keeps its place, and the attempt is
		 * given back: throttling never makes an event fail.
		 */
		pd_key_throttled(key, now, req->retry_after_s);
		ereport(LOG,
				(errmsg("pagerduty: PagerDuty throttled routing key %s; pausing it until %s",
						key_hint(job->routing_key),
						timestamptz_to_str(pd_key_paused_until(key)))));
		add_outcome(job->id, "pending", 429, reason, pd_key_paused_until(key), true);
	}
	else if (req->status == 400)
	{
		/* PagerDuty refused the event itself: sending it again will not help */
		fail_event(job->id, job->service, (int) req->status, reason);
	}
	else
	{
		/*
		 * 5xx, 408, and the other answers, which may come from a proxy or a
		 * misconfiguration being fixed (401, 403, 404, 407): retried, within
		 * pagerduty.max_attempts.
		 */
		retry_or_fail(job, (int) req->status, reason, now);
	}
}

static void
start_ready_jobs(void)
{
	while (n_ready > 0 && pd_http_in_flight() < pd_max_connections)
	{
		Job		   *job = dlist_container(Job, node, dlist_pop_head_node(&ready));
		MemoryContext cxt = CurrentMemoryContext;
		TimestampTz paused_until;
		PdKey	   *volatile key;

		n_ready--;

		/* its key was paused by a 429 since it was claimed: it waits, unsent */
		key = pd_key_get(job->routing_key);
		paused_until = pd_key_paused_until(key);
		if (paused_until > GetCurrentTimestamp())
		{
			pd_key_unreserve(key);
			add_outcome(job->id, "pending", 0,
						"not sent: the routing key is paused after a 429 from PagerDuty",
						paused_until, true);
			MemoryContextDelete(job->cxt);
			continue;
		}

		job->req.url = job->url;
		job->req.body = job->body;
		job->req.body_len = job->body_len;
		job->req.owner = job;

		/*
		 * pd_http_start() frees what it allocated before raising an error,
		 * and holds no other resource: catching it here is safe, and the
		 * event is retried like any other network failure.
		 */
		PG_TRY();
		{
			pd_http_start(&job->req);
			pd_key_sent(key, GetCurrentTimestamp());
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			pd_key_unreserve(key);
			retry_or_fail(job, 0, edata->message, GetCurrentTimestamp());
			FreeErrorData(edata);
			MemoryContextDelete(job->cxt);
		}
		PG_END_TRY();
	}
}

static void
process_done(void)
{
	PdHttpRequest *req;

	while ((req = pd_http_next_done()) != NULL)
	{
		Job		   *job = (Job *) req->owner;

		judge(job);
		MemoryContextDelete(job->cxt);
	}
}

/* ----------------------------------------------------------------
 *		Record and purge
 * ----------------------------------------------------------------
 */

static void
record(void)
{
	if (!begin_or_step_aside("recording outcomes"))
		return;
	/* begin may have found a new extension and dropped the outcomes */
	if (n_outcomes > 0)
		pd_outbox_record(outcomes, n_outcomes);
	end_txn(true);
	forget_outcomes();
	/* the next events of those queues are heads now */
	want_claim = true;
}

static void
purge(void)
{
	uint64		deleted;

	if (!begin_or_step_aside("deleting old events"))
		return;
	deleted = pd_outbox_purge(pd_retention_s, PD_PURGE_BATCH);
	end_txn(true);
	/* more to delete: another batch soon, between deliveries */
	next_purge = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											 deleted == PD_PURGE_BATCH ? 0 : PD_PURGE_EVERY_MS);
	pd_keys_forget_idle(GetCurrentTimestamp());
}

/* ----------------------------------------------------------------
 *		Main loop
 * ----------------------------------------------------------------
 */

static long
ms_until(TimestampTz now, TimestampTz when)
{
	return when <= now ? 0 : TimestampDifferenceMilliseconds(now, when);
}

void
pagerduty_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	TimestampTz hold_until;
	pid_t		other;
	sigjmp_buf	local_sigjmp_buf;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	pqsignal(SIGPIPE, SIG_IGN);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("pagerduty worker");

	/*
	 * Only one worker may ever serve the outbox: at start it puts back the
	 * events that were in flight, which must be nobody's.
	 */
	SpinLockAcquire(&pd_shared->mutex);
	hold_until = pd_shared->hold_until;
	other = pd_shared->worker_pid;
	if (other == 0)
	{
		pd_shared->worker_pid = MyProcPid;
		pd_shared->worker_latch = MyLatch;
		pd_shared->worker_dboid = dboid;
	}
	SpinLockRelease(&pd_shared->mutex);
	on_shmem_exit(worker_detach, (Datum) 0);
	if (other != 0)
	{
		elog(LOG, "pagerduty worker: another worker (PID %d) is running; exiting", (int) other);
		proc_exit(0);
	}

	/* DROP DATABASE asked us to stay away */
	if (GetCurrentTimestamp() < hold_until)
		proc_exit(0);

	jobs_cxt = AllocSetContextCreate(TopMemoryContext, "pagerduty jobs",
									 ALLOCSET_DEFAULT_SIZES);
	outcomes_cxt = AllocSetContextCreate(TopMemoryContext, "pagerduty outcomes",
										 ALLOCSET_DEFAULT_SIZES);
	claim_cxt = AllocSetContextCreate(TopMemoryContext, "pagerduty claim",
									  ALLOCSET_DEFAULT_SIZES);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pagerduty loop",
									 ALLOCSET_DEFAULT_SIZES);
	pd_keys_init();
	pd_http_init();
	configure_http();

	ereport(LOG,
			(errmsg("pagerduty worker started for database \"%s\"", pd_database)));

	/*
	 * An error outside the transactions of run_txn() (a query cancel, say)
	 * comes back here, as in PostgreSQL's own background processes: report
	 * it, clean up, and carry on after a pause instead of exiting, which
	 * would send the events in flight again.
	 */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(TopMemoryContext);
		FlushErrorState();
		RESUME_INTERRUPTS();
		backoff_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), PD_BACKOFF_MS);
		want_claim = true;
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		TimestampTz now;
		TimestampTz db_at;
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			configure_http();
			want_claim = true;
			next_purge = 0;		/* a shorter retention applies at once */
		}

		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);

		now = GetCurrentTimestamp();
		if (now >= backoff_until)
		{
			if (n_outcomes > 0 &&
				(pd_http_in_flight() == 0 || n_outcomes >= PD_RECORD_BATCH ||
				 now >= TimestampTzPlusMilliseconds(first_outcome_at, PD_RECORD_DELAY_MS)))
				run_txn(record);

			if (n_outcomes == 0 && n_ready < pd_max_connections &&
				(want_claim || now >= next_poll || (next_due != 0 && now >= next_due)))
			{
				next_poll = TimestampTzPlusMilliseconds(now, extension_missing ?
														PD_NO_EXTENSION_MS : PD_POLL_MS);
				next_due = 0;
				want_claim = false;
				run_txn(claim);
			}

			if (!extension_missing && pd_retention_s >= 0 && now >= next_purge &&
				n_outcomes == 0)
				run_txn(purge);
		}

		start_ready_jobs();

		/* sleep until the network, the latch, or the next thing to do */
		now = GetCurrentTimestamp();
		db_at = next_poll;
		if (want_claim && n_ready < pd_max_connections && n_outcomes == 0)
			db_at = now;
		if (next_due != 0)
			db_at = Min(db_at, next_due);
		if (n_outcomes > 0)
			db_at = Min(db_at, pd_http_in_flight() == 0 ? now :
						TimestampTzPlusMilliseconds(first_outcome_at, PD_RECORD_DELAY_MS));
		if (!extension_missing && pd_retention_s >= 0)
			db_at = Min(db_at, next_purge);
		db_at = Max(db_at, backoff_until);
		timeout = ms_until(now, db_at);
		if (n_ready > 0 && pd_http_in_flight() < pd_max_connections)
			timeout = 0;

		if (pd_http_wait(timeout, PG_WAIT_EXTENSION))
		{
			ResetLatch(MyLatch);
			want_claim = true;
		}
		process_done();
	}
}
