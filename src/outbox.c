/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  Every read and write of pagerduty_outbox.
 *
 *	  The outbox is a logged table, so an event is exactly as durable as the
 *	  transaction that enqueued it: a rolled-back transaction leaves no row
 *	  and nothing is ever sent for it; a committed one survives crashes and
 *	  is replicated to standbys.
 *
 *	  A row is 'pending' until delivered or failed.  Order is kept per queue
 *	  (service, dedup key): only the oldest pending event of a queue, its
 *	  head, is ever handed out, so a resolve never overtakes its trigger,
 *	  even while the trigger waits for a retry.  claimed_at marks a head whose
 *	  request is in flight; see worker.c for why that loses nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "outbox.h"
#include "spi_util.h"

static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr retry_plan = NULL;
static SPIPlanPtr retry_skipped_plan = NULL;
static SPIPlanPtr due_plan = NULL;
static SPIPlanPtr candidates_plan = NULL;
static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr defer_plan = NULL;
static SPIPlanPtr record_plan = NULL;
static SPIPlanPtr release_plan = NULL;
static SPIPlanPtr next_due_plan = NULL;
static SPIPlanPtr purge_plan = NULL;

/* ----------------------------------------------------------------
 *		Enqueue
 * ----------------------------------------------------------------
 */

int64
pd_outbox_insert(const char *service, PdAction action, const char *dedup_key,
				 const char *severity, Jsonb *event, const char *body,
				 int body_len)
{
	Oid			argtypes[6] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, JSONOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	SPIPlanPtr	plan;
	bool		isnull;

	plan = pd_prepare(&insert_plan,
					  "INSERT INTO pagerduty_outbox "
					  "(service, event_action, dedup_key, severity, event, payload) "
					  "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
					  6, argtypes);

	values[0] = CStringGetTextDatum(service);
	values[1] = CStringGetTextDatum(pd_action_name(action));
	if (dedup_key)
		values[2] = CStringGetTextDatum(dedup_key);
	else
		nulls[2] = 'n';
	if (severity)
		values[3] = CStringGetTextDatum(severity);
	else
		nulls[3] = 'n';
	if (event)
		values[4] = JsonbPGetDatum(event);
	else
		nulls[4] = 'n';
	/* json is stored as its text: exactly the bytes that will be sent */
	values[5] = PointerGetDatum(cstring_to_text_with_len(body, body_len));

	pd_execute(plan, values, nulls, false, 1, SPI_OK_INSERT_RETURNING);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

/* ----------------------------------------------------------------
 *		pagerduty_retry() and pagerduty_wait()
 * ----------------------------------------------------------------
 */

/*
 * Put failed events (one, or all) back to pending with a fresh count of
 * attempts.  A failed event whose queue has since delivered (or is
 * sending) a later event stays failed: sending it now would reorder the
 * queue (an old trigger after its resolve would open an incident nobody
 * resolves).  *skipped
 * says how many were left failed for that reason.
 */
int64
pd_outbox_retry(bool all, int64 id, int64 *skipped)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	char		nulls[1] = {all ? 'n' : ' '};
	SPIPlanPtr	plan;
	int64		done;

	plan = pd_prepare_replanned(&retry_plan,
					  "UPDATE pagerduty_outbox o "
					  "SET status = 'pending', attempts = 0, next_attempt_at = now(), "
					  "    claimed_at = NULL, finished_at = NULL "
					  "WHERE o.status = 'failed' AND ($1::bigint IS NULL OR o.id = $1) "
					  "AND NOT EXISTS (SELECT 1 FROM pagerduty_outbox l "
					  "  WHERE l.service = o.service AND l.dedup_key = o.dedup_key "
					  "  AND l.id > o.id "
					  "  AND (l.status = 'delivered' OR l.claimed_at IS NOT NULL))",
					  1, argtypes);
	pd_execute(plan, values, nulls, false, 0, SPI_OK_UPDATE);
	done = SPI_processed;

	plan = pd_prepare_replanned(&retry_skipped_plan,
					  "SELECT count(*) FROM pagerduty_outbox "
					  "WHERE status = 'failed' AND ($1::bigint IS NULL OR id = $1)",
					  1, argtypes);
	pd_execute(plan, values, nulls, false, 1, SPI_OK_SELECT);
	{
		bool		isnull;

		*skipped = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
	}
	return done;
}

/*
 * Is any pending event due at 'now'?  In-flight events count: they are
 * pending, and due, until their outcome is recorded.
 */
bool
pd_outbox_any_due(TimestampTz now)
{
	Oid			argtypes[1] = {TIMESTAMPTZOID};
	Datum		values[1] = {TimestampTzGetDatum(now)};
	SPIPlanPtr	plan;
	bool		isnull;

	/* min() reads one entry of the due index, whatever the backlog */
	plan = pd_prepare(&due_plan,
					  "SELECT coalesce(min(next_attempt_at) <= $1, false) "
					  "FROM pagerduty_outbox WHERE status = 'pending'",
					  1, argtypes);
	/* not read-only: each call must take a fresh snapshot */
	pd_execute(plan, values, NULL, false, 1, SPI_OK_SELECT);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull));
}

/* ----------------------------------------------------------------
 *		The worker's side
 * ----------------------------------------------------------------
 */

static PdAction
action_from_name(const char *name)
{
	if (strcmp(name, "trigger") == 0)
		return PD_ACTION_TRIGGER;
	if (strcmp(name, "acknowledge") == 0)
		return PD_ACTION_ACKNOWLEDGE;
	if (strcmp(name, "resolve") == 0)
		return PD_ACTION_RESOLVE;
	return PD_ACTION_CHANGE;
}

static char *
copy_text(MemoryContext cxt, HeapTuple tuple, TupleDesc desc, int col, int *len)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, col, &isnull);
	text	   *t;
	char	   *s;
	int			n;

	if (isnull)
		return NULL;
	t = DatumGetTextPP(d);
	n = VARSIZE_ANY_EXHDR(t);
	s = MemoryContextAlloc(cxt, n + 1);
	memcpy(s, VARDATA_ANY(t), n);
	s[n] = '\0';
	if (len)
		*len = n;
	return s;
}

/*
 * Lock and return up to 'limit' due heads of queues, oldest due first,
 * copied into cxt.  A queue with an event in flight gives out nothing else
 * until that event's outcome is recorded.  Rows locked by someone else are skipped, not waited
 * for.  The routing key is read now, at send time, from the service.
 */
int
pd_outbox_candidates(int limit, MemoryContext cxt, PdCandidate **out)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(limit)};
	SPIPlanPtr	plan;
	PdCandidate *c;
	int			nestlevel;

	plan = pd_prepare_replanned(&candidates_plan,
					  "SELECT o.id, o.service, o.event_action, o.dedup_key, o.payload, "
					  "       o.attempts, s.routing_key, s.events_url "
					  "FROM pagerduty_outbox o "
					  "LEFT JOIN pagerduty_services s ON s.name = o.service "
					  "WHERE o.status = 'pending' AND o.claimed_at IS NULL "
					  "AND o.next_attempt_at <= now() "
					  "AND NOT EXISTS (SELECT 1 FROM pagerduty_outbox p "
					  "  WHERE p.status = 'pending' AND p.service = o.service "
					  "  AND p.dedup_key = o.dedup_key AND p.id < o.id) "
					  "AND NOT EXISTS (SELECT 1 FROM pagerduty_outbox p "
					  "  WHERE p.status = 'pending' AND p.service = o.service "
					  "  AND p.dedup_key = o.dedup_key AND p.claimed_at IS NOT NULL) "
					  "ORDER BY o.next_attempt_at, o.id "
					  "LIMIT $1 "
					  "FOR UPDATE OF o SKIP LOCKED",
					  1, argtypes);
	/*
	 * The claim must walk the due index in order and stop after 'limit'
	 * heads.  Right after a burst into an empty outbox, before autovacuum has
	 * analyzed it, the planner believes the outbox nearly empty and would
	 * rather sort every due row, at every round: with a large backlog that
	 * is the whole cost of delivery.  Sorting and bitmap scans are therefore
	 * ruled out for this statement (and only for it).
	 */
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("enable_sort", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	pd_execute(plan, values, NULL, false, 0, SPI_OK_SELECT);
	AtEOXact_GUC(true, nestlevel);

	c = MemoryContextAllocZero(cxt, sizeof(PdCandidate) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *action;

		c[i].id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		c[i].service = copy_text(cxt, tuple, desc, 2, NULL);
		action = copy_text(cxt, tuple, desc, 3, NULL);
		c[i].action = action_from_name(action);
		c[i].dedup_key = copy_text(cxt, tuple, desc, 4, NULL);
		c[i].body = copy_text(cxt, tuple, desc, 5, &c[i].body_len);
		c[i].attempts = DatumGetInt32(SPI_getbinval(tuple, desc, 6, &isnull));
		c[i].routing_key = copy_text(cxt, tuple, desc, 7, NULL);
		c[i].events_url = copy_text(cxt, tuple, desc, 8, NULL);
	}
	*out = c;
	return (int) SPI_processed;
}

static Datum
int8_array(const int64 *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(v[i]);
	return PointerGetDatum(construct_array_builtin(d, n, INT8OID));
}

static Datum
timestamptz_array(Datum *d, int n)
{
	return PointerGetDatum(construct_array(d, n, TIMESTAMPTZOID, sizeof(TimestampTz),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* An attempt starts: count it and mark it in flight. */
void
pd_outbox_claim(const int64 *ids, int n)
{
	Oid			argtypes[1] = {INT8ARRAYOID};
	Datum		values[1];
	SPIPlanPtr	plan;

	if (n == 0)
		return;
	plan = pd_prepare_replanned(&claim_plan,
					  "UPDATE pagerduty_outbox "
					  "SET claimed_at = now(), attempts = attempts + 1, last_attempt_at = now() "
					  "WHERE id = ANY ($1)",
					  1, argtypes);
	values[0] = int8_array(ids, n);
	pd_execute(plan, values, NULL, false, 0, SPI_OK_UPDATE);
}

/* Not now: the routing key is paused or out of its rate budget. */
void
pd_outbox_defer(const int64 *ids, const TimestampTz *at, int n)
{
	Oid			argtypes[2] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		values[2];
	Datum	   *d;
	SPIPlanPtr	plan;

	if (n == 0)
		return;
	plan = pd_prepare_replanned(&defer_plan,
					  "UPDATE pagerduty_outbox o SET next_attempt_at = d.at "
					  "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS d(id, at) "
					  "WHERE o.id = d.id",
					  2, argtypes);
	d = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
		d[i] = TimestampTzGetDatum(at[i]);
	values[0] = int8_array(ids, n);
	values[1] = timestamptz_array(d, n);
	pd_execute(plan, values, NULL, false, 0, SPI_OK_UPDATE);
}

/*
 * Record outcomes, all in one statement.  A pending outcome is a retry:
 * the row is no longer in flight and comes due again at next_attempt_at.
 */
void
pd_outbox_record(const PdOutcome *outcomes, int n)
{
	Oid			argtypes[7] = {INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
	TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, BOOLARRAYOID};
	Datum		values[7];
	Datum	   *refund;
	Datum	   *ids;
	Datum	   *status;
	Datum	   *http;
	bool	   *http_null;
	Datum	   *err;
	bool	   *err_null;
	Datum	   *next;
	bool	   *next_null;
	Datum	   *at;
	int			dims[1] = {n};
	int			lbs[1] = {1};
	SPIPlanPtr	plan;

	if (n == 0)
		return;
	ids = palloc(sizeof(Datum) * n);
	status = palloc(sizeof(Datum) * n);
	http = palloc(sizeof(Datum) * n);
	http_null = palloc(sizeof(bool) * n);
	err = palloc(sizeof(Datum) * n);
	err_null = palloc(sizeof(bool) * n);
	next = palloc(sizeof(Datum) * n);
	next_null = palloc(sizeof(bool) * n);
	at = palloc(sizeof(Datum) * n);
	refund = palloc(sizeof(Datum) * n);
	plan = pd_prepare_replanned(&record_plan,
					  "UPDATE pagerduty_outbox o "
					  "SET status = r.status, http_status = r.http_status, "
					  "    last_error = r.last_error, claimed_at = NULL, "
					  "    next_attempt_at = coalesce(r.next_at, o.next_attempt_at), "
					  "    delivered_at = CASE WHEN r.status = 'delivered' THEN r.at END, "
					  "    finished_at = CASE WHEN r.status <> 'pending' THEN r.at END, "
					  "    attempts = CASE WHEN r.refund THEN o.attempts - 1 ELSE o.attempts END "
					  "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
					  "  pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5), "
					  "  pg_catalog.unnest($6), pg_catalog.unnest($7)) "
					  "  AS r(id, status, http_status, last_error, next_at, at, refund) "
					  "WHERE o.id = r.id",
					  7, argtypes);

	for (int i = 0; i < n; i++)
	{
		const PdOutcome *o = &outcomes[i];

		ids[i] = Int64GetDatum(o->id);
		status[i] = CStringGetTextDatum(o->status);
		http[i] = Int32GetDatum(o->http_status);
		http_null[i] = (o->http_status == 0);
		err_null[i] = (o->last_error == NULL);
		err[i] = err_null[i] ? (Datum) 0 : CStringGetTextDatum(o->last_error);
		next_null[i] = (strcmp(o->status, "pending") != 0);
		next[i] = TimestampTzGetDatum(o->next_attempt_at);
		at[i] = TimestampTzGetDatum(o->at);
		refund[i] = BoolGetDatum(o->refund_attempt);
	}
	values[0] = PointerGetDatum(construct_array_builtin(ids, n, INT8OID));
	values[1] = PointerGetDatum(construct_array_builtin(status, n, TEXTOID));
	values[2] = PointerGetDatum(construct_md_array(http, http_null, 1, dims, lbs,
												   INT4OID, 4, true, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_md_array(err, err_null, 1, dims, lbs,
												   TEXTOID, -1, false, TYPALIGN_INT));
	values[4] = PointerGetDatum(construct_md_array(next, next_null, 1, dims, lbs,
												   TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL,
												   TYPALIGN_DOUBLE));
	values[5] = timestamptz_array(at, n);
	values[6] = PointerGetDatum(construct_array(refund, n, BOOLOID, 1, true, TYPALIGN_CHAR));
	pd_execute(plan, values, NULL, false, 0, SPI_OK_UPDATE);
}

/*
 * At worker start: nothing can be in flight, since the worker that claimed
 * those rows is gone (crash, restart, failover).  Put them back; they are
 * sent again with the same dedup key.
 */
uint64
pd_outbox_release_claims(void)
{
	SPIPlanPtr	plan = pd_prepare_replanned(&release_plan,
								  "UPDATE pagerduty_outbox SET claimed_at = NULL "
								  "WHERE status = 'pending' AND claimed_at IS NOT NULL",
								  0, NULL);

	pd_execute(plan, NULL, NULL, false, 0, SPI_OK_UPDATE);
	return SPI_processed;
}

/* When the next retry or deferred event comes due (0: none waiting). */
TimestampTz
pd_outbox_next_due(void)
{
	SPIPlanPtr	plan = pd_prepare_replanned(&next_due_plan,
								  "SELECT min(next_attempt_at) FROM pagerduty_outbox "
								  "WHERE status = 'pending' AND next_attempt_at > now()",
								  0, NULL);
	bool		isnull;
	Datum		d;

	/* not read-only: it must see the deferrals this transaction just made */
	pd_execute(plan, NULL, NULL, false, 1, SPI_OK_SELECT);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(d);
}

/*
 * Delete up to 'limit' delivered or failed rows older than the retention.
 * Rows locked by someone else are skipped, not waited for, and the outer
 * conditions are checked again on the row found: a row put back to
 * pending by a concurrent pagerduty_retry() is never deleted.
 */
uint64
pd_outbox_purge(int retention_s, int limit)
{
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(retention_s), Int32GetDatum(limit)};
	SPIPlanPtr	plan;

	plan = pd_prepare_replanned(&purge_plan,
					  "DELETE FROM pagerduty_outbox o "
					  "WHERE o.status <> 'pending' "
					  "AND o.finished_at < now() - pg_catalog.make_interval(secs => $1) "
					  "AND o.id IN ("
					  "  SELECT id FROM pagerduty_outbox "
					  "  WHERE status <> 'pending' "
					  "  AND finished_at < now() - pg_catalog.make_interval(secs => $1) "
					  "  LIMIT $2 FOR UPDATE SKIP LOCKED)",
					  2, argtypes);
	pd_execute(plan, values, NULL, false, 0, SPI_OK_DELETE);
	return SPI_processed;
}
