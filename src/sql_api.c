/*-------------------------------------------------------------------------
 *
 * sql_api.c
 *	  The SQL-callable functions of DESIGN §2.
 *
 *	  The enqueue functions are SECURITY DEFINER with the search_path fixed
 *	  to the extension's schema (see the install script): a role that was
 *	  granted EXECUTE can enqueue without any right on the tables.  Each one
 *	  checks its input, resolves the service, builds the body and inserts
 *	  one outbox row in the caller's transaction, then asks for the worker
 *	  to be woken when that transaction commits.  An error anywhere leaves
 *	  nothing behind: the row goes with the transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "outbox.h"
#include "pagerduty.h"
#include "payload.h"
#include "service.h"
#include "settings.h"
#include "sql_api.h"

PG_FUNCTION_INFO_V1(pagerduty_trigger);
PG_FUNCTION_INFO_V1(pagerduty_acknowledge);
PG_FUNCTION_INFO_V1(pagerduty_resolve);
PG_FUNCTION_INFO_V1(pagerduty_change);
PG_FUNCTION_INFO_V1(pagerduty_build_payload);
PG_FUNCTION_INFO_V1(pagerduty_add_service);
PG_FUNCTION_INFO_V1(pagerduty_retry);
PG_FUNCTION_INFO_V1(pagerduty_wait);

/* argument n as a C string, or NULL */
static char *
text_arg(FunctionCallInfo fcinfo, int n)
{
	if (PG_NARGS() <= n || PG_ARGISNULL(n))
		return NULL;
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

static Jsonb *
jsonb_arg(FunctionCallInfo fcinfo, int n)
{
	if (PG_NARGS() <= n || PG_ARGISNULL(n))
		return NULL;
	return PG_GETARG_JSONB_P(n);
}

static void
connect_spi(void)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

static void
finish_spi(void)
{
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
}

static void
fill_input(PdEventInput *in, Jsonb *event, const char *service)
{
	in->event = event;
	in->severity = NULL;
	in->dedup_key = NULL;
	in->service = service;
	in->client = pd_client;
	in->client_url = pd_client_url;
	/* now(): the same instant as the outbox row's enqueued_at */
	in->enqueued_at = GetCurrentTransactionStartTimestamp();
}

char *
pd_enqueue_trigger(Jsonb *event, const char *severity, const char *service,
				   const char *dedup_key)
{
	PdEventInput in;
	PdPayload	out;
	char	   *svc;

	if (dedup_key != NULL)
		pd_check_dedup_key(dedup_key);
	svc = pd_resolve_service(service);

	fill_input(&in, event, svc);
	in.severity = severity;
	in.dedup_key = dedup_key;
	pd_build_trigger(&in, &out);

	pd_outbox_insert(svc, PD_ACTION_TRIGGER, out.dedup_key, out.severity,
					 event, out.body, out.body_len);
	pd_note_enqueue();
	/* outlive SPI_finish() */
	return strcpy(SPI_palloc(strlen(out.dedup_key) + 1), out.dedup_key);
}

/*
 * pagerduty_trigger(event jsonb, severity text, service text, dedup_key text)
 * returns text: enqueue a trigger event, return its dedup key.
 */
Datum
pagerduty_trigger(PG_FUNCTION_ARGS)
{
	Jsonb	   *event = jsonb_arg(fcinfo, 0);
	char	   *severity = text_arg(fcinfo, 1);
	char	   *service = text_arg(fcinfo, 2);
	char	   *dedup_key = text_arg(fcinfo, 3);
	char	   *result;

	connect_spi();
	result = pd_enqueue_trigger(event, severity, service, dedup_key);
	finish_spi();
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

static Datum
enqueue_ack_resolve(FunctionCallInfo fcinfo, PdAction action)
{
	char	   *dedup_key = text_arg(fcinfo, 0);
	char	   *service = text_arg(fcinfo, 1);
	PdPayload	out;
	char	   *svc;
	int64		id;

	pd_build_ack_resolve(action, dedup_key, &out);
	connect_spi();
	svc = pd_resolve_service(service);
	id = pd_outbox_insert(svc, action, out.dedup_key, NULL, NULL,
						  out.body, out.body_len);
	finish_spi();
	pd_note_enqueue();
	PG_RETURN_INT64(id);
}

/* pagerduty_acknowledge(dedup_key text, service text) returns bigint */
Datum
pagerduty_acknowledge(PG_FUNCTION_ARGS)
{
	return enqueue_ack_resolve(fcinfo, PD_ACTION_ACKNOWLEDGE);
}

/* pagerduty_resolve(dedup_key text, service text) returns bigint */
Datum
pagerduty_resolve(PG_FUNCTION_ARGS)
{
	return enqueue_ack_resolve(fcinfo, PD_ACTION_RESOLVE);
}

/* pagerduty_change(event jsonb, service text) returns bigint */
Datum
pagerduty_change(PG_FUNCTION_ARGS)
{
	Jsonb	   *event = jsonb_arg(fcinfo, 0);
	char	   *service = text_arg(fcinfo, 1);
	PdEventInput in;
	PdPayload	out;
	char	   *svc;
	int64		id;

	connect_spi();
	svc = pd_resolve_service(service);
	fill_input(&in, event, svc);
	pd_build_change(&in, &out);
	id = pd_outbox_insert(svc, PD_ACTION_CHANGE, NULL, NULL, event,
						  out.body, out.body_len);
	finish_spi();
	pd_note_enqueue();
	PG_RETURN_INT64(id);
}

/*
 * pagerduty_build_payload(event jsonb, severity text, dedup_key text)
 * returns jsonb: the body pagerduty_trigger() would send to the default
 * service, without the routing key.  Enqueues nothing.
 */
Datum
pagerduty_build_payload(PG_FUNCTION_ARGS)
{
	Jsonb	   *event = jsonb_arg(fcinfo, 0);
	PdEventInput in;
	PdPayload	out;
	char	   *svc;

	connect_spi();
	svc = pd_default_service();
	finish_spi();

	fill_input(&in, event, svc);
	in.severity = text_arg(fcinfo, 1);
	in.dedup_key = text_arg(fcinfo, 2);
	if (in.dedup_key != NULL)
		pd_check_dedup_key(in.dedup_key);
	pd_build_trigger(&in, &out);

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.body)));
}

/*
 * pagerduty_add_service(name text, routing_key text, is_default bool,
 * events_url text) returns void: add or replace a service.  Runs with the
 * caller's rights; the guard trigger on pagerduty_services checks the key,
 * the single default and who may set events_url.
 */
Datum
pagerduty_add_service(PG_FUNCTION_ARGS)
{
	char	   *name = text_arg(fcinfo, 0);
	char	   *routing_key = text_arg(fcinfo, 1);
	bool		is_default = PG_ARGISNULL(2) ? false : PG_GETARG_BOOL(2);
	char	   *events_url = text_arg(fcinfo, 3);
	MemoryContext cxt = CurrentMemoryContext;

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("service name must not be null"),
				 errhidestmt(true)));
	if (routing_key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("routing key must not be null"),
				 errhidestmt(true),
				 errhint("Use the Integration Key of an Events API v2 integration, from the service's Integrations tab in PagerDuty.")));

	/*
	 * The statement that called us holds the routing key: whatever goes
	 * wrong, the error must not bring it into the server log as its
	 * STATEMENT line.
	 */
	PG_TRY();
	{
		connect_spi();
		pd_add_service(name, routing_key, is_default, events_url);
		finish_spi();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		edata->hide_stmt = true;
		ReThrowError(edata);
	}
	PG_END_TRY();
	PG_RETURN_VOID();
}

/*
 * pagerduty_retry(id bigint) returns bigint: put one failed event, or all
 * of them with NULL, back to pending.  Returns how many.
 */
Datum
pagerduty_retry(PG_FUNCTION_ARGS)
{
	bool		all = PG_ARGISNULL(0);
	int64		id = all ? 0 : PG_GETARG_INT64(0);
	int64		done;
	int64		skipped;

	connect_spi();
	done = pd_outbox_retry(all, id, &skipped);
	finish_spi();
	if (skipped > 0)
		ereport(NOTICE,
				(errmsg_plural("%lld failed event was not put back",
							   "%lld failed events were not put back",
							   skipped, (long long) skipped),
				 errdetail("A later event with the same service and dedup key has been delivered, or is being sent; sending the older one now would reorder them.")));
	if (done > 0)
		pd_note_enqueue();
	PG_RETURN_INT64(done);
}

/*
 * pagerduty_wait(timeout interval) returns bool: wait until no pending event
 * is due, that is until everything that can be sent now has been sent and
 * recorded.  False on timeout.
 */
Datum
pagerduty_wait(PG_FUNCTION_ARGS)
{
	Interval   *timeout = PG_GETARG_INTERVAL_P(0);
	int64		usecs;
	TimestampTz deadline;

	usecs = timeout->time +
		(int64) timeout->day * USECS_PER_DAY +
		(int64) timeout->month * DAYS_PER_MONTH * USECS_PER_DAY;
	if (usecs < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pagerduty_wait() cannot be used in a REPEATABLE READ or SERIALIZABLE transaction"),
				 errdetail("Such a transaction never sees the worker record a delivery."),
				 errhint("Call it in a READ COMMITTED transaction.")));
	if (pd_enqueued_in_xact())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pagerduty_wait() cannot wait for events of its own transaction"),
				 errdetail("Events are sent only after the transaction that enqueued them commits."),
				 errhint("Commit first, then call pagerduty_wait().")));

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), usecs / 1000);
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		bool		due;
		long		sleep_ms;

		connect_spi();
		due = pd_outbox_any_due(now);
		finish_spi();
		if (!due)
			PG_RETURN_BOOL(true);
		if (now >= deadline)
			PG_RETURN_BOOL(false);

		sleep_ms = Min(20, TimestampDifferenceMilliseconds(now, deadline));
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(sleep_ms, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}
