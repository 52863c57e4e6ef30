/*-------------------------------------------------------------------------
 *
 * service.c
 *	  PagerDuty services: which service an event goes to, adding services,
 *	  and the guard that keeps pagerduty_services valid however it is
 *	  written to.
 *
 *	  A routing key is a secret: no message here ever contains one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/rel.h"

#include "payload.h"
#include "service.h"
#include "settings.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(pagerduty_services_guard);

static SPIPlanPtr named_plan = NULL;
static SPIPlanPtr default_plan = NULL;
static SPIPlanPtr other_default_plan = NULL;
static SPIPlanPtr upsert_plan = NULL;

/* Column 1 of the first row of the last result, or NULL; it outlives SPI_finish(). */
static char *
first_value(void)
{
	if (SPI_processed == 0)
		return NULL;
	return pd_spi_text(0, 1);
}

/*
 * The name of the default service, or NULL if there is none.
 */
char *
pd_default_service(void)
{
	SPIPlanPtr	plan = pd_prepare(&default_plan,
								  "SELECT name FROM pagerduty_services WHERE is_default",
								  0, NULL);

	pd_execute(plan, NULL, NULL, true, 1, SPI_OK_SELECT);
	return first_value();
}

/* Does a service of that name exist? */
bool
pd_service_exists(const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	SPIPlanPtr	plan = pd_prepare(&named_plan,
								  "SELECT 1 FROM pagerduty_services WHERE name = $1",
								  1, argtypes);

	pd_execute(plan, values, NULL, true, 1, SPI_OK_SELECT);
	return SPI_processed > 0;
}

/*
 * The service an event goes to: the named one, or the default one when name
 * is NULL.  An unknown service is an error now, at enqueue time, not a
 * delivery failure later.  The name is allocated so that it outlives
 * SPI_finish(), like pd_default_service()'s.
 */
char *
pd_resolve_service(const char *name)
{
	char	   *found;

	if (name == NULL)
	{
		found = pd_default_service();
		if (found == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("no service given and there is no default service"),
					 errhint("Name a service, or make one the default with pagerduty_add_service(name, routing_key, is_default => true).")));
		return found;
	}
	if (!pd_service_exists(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown service \"%s\"", name),
				 errhint("Add it with pagerduty_add_service(), or list the services in pagerduty_services.")));
	return strcpy(SPI_palloc(strlen(name) + 1), name);
}

/* ----------------------------------------------------------------
 *		The guard trigger on pagerduty_services
 * ----------------------------------------------------------------
 */

static char *
get_text_column(HeapTuple tuple, TupleDesc desc, const char *column)
{
	int			attno = SPI_fnumber(desc, column);

	if (attno <= 0)
		elog(ERROR, "pagerduty_services has no column \"%s\"", column);
	return SPI_getvalue(tuple, desc, attno);
}

static bool
column_is_null(HeapTuple tuple, TupleDesc desc, const char *column)
{
	int			attno = SPI_fnumber(desc, column);
	bool		isnull;

	if (attno <= 0)
		elog(ERROR, "pagerduty_services has no column \"%s\"", column);
	(void) SPI_getbinval(tuple, desc, attno, &isnull);
	return isnull;
}

static bool
get_bool_column(HeapTuple tuple, TupleDesc desc, const char *column)
{
	int			attno = SPI_fnumber(desc, column);
	bool		isnull;
	Datum		d;

	if (attno <= 0)
		elog(ERROR, "pagerduty_services has no column \"%s\"", column);
	d = SPI_getbinval(tuple, desc, attno, &isnull);
	return !isnull && DatumGetBool(d);
}

/*
 * Check a routing key: exactly 32 characters of [A-Za-z0-9], the form of
 * an Events API v2 integration key.  The message says how long the key was
 * and never shows it.
 */
static void
check_routing_key(const char *service, const char *key)
{
	int			len = key ? strlen(key) : 0;
	bool		ok = (len == PD_ROUTING_KEY_LEN);

	for (int i = 0; ok && i < len; i++)
	{
		if (!isalnum((unsigned char) key[i]) || IS_HIGHBIT_SET(key[i]))
			ok = false;
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid routing key for service \"%s\"", service),
				 errhidestmt(true),
				 key == NULL ?
				 errdetail("The routing key is null.") :
				 errdetail("A routing key is %d letters and digits; the one given has %d characters%s.",
						   PD_ROUTING_KEY_LEN, pg_mbstrlen_with_len(key, len),
						   len == PD_ROUTING_KEY_LEN ? ", not all letters or digits" : ""),
				 errhint("Use the Integration Key of an Events API v2 integration, from the service's Integrations tab in PagerDuty.")));
}

static void
check_name_and_url(const char *name, const char *events_url)
{
	if (name == NULL || name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("service name must not be empty"),
				 errhidestmt(true),
				 errhint("Name the service after the PagerDuty service it pages, such as 'database'.")));
	if (events_url != NULL && !pd_is_http_url(events_url))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid events URL for service \"%s\"", name),
				 errhidestmt(true),
				 errdetail("The events URL must be an http:// or https:// URL."),
				 errhint("Leave it null to use pagerduty.events_url.")));
}

static void
check_may_set_events_url(const char *name)
{
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to set the events URL of service \"%s\"", name),
				 errhidestmt(true),
				 errdetail("Only superusers can change where events are sent."),
				 errhint("Leave events_url null to use pagerduty.events_url.")));
}

/* At most one default service.  Caller is connected to SPI. */
static void
check_single_default(const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	char	   *other;
	SPIPlanPtr	plan;

	plan = pd_prepare(&other_default_plan,
					  "SELECT name FROM pagerduty_services WHERE is_default AND name <> $1",
					  1, argtypes);
	pd_execute(plan, values, NULL, true, 1, SPI_OK_SELECT);
	other = first_value();
	if (other != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("service \"%s\" is already the default service", other),
				 errhidestmt(true),
				 errdetail("There can be at most one default service."),
				 errhint("Make \"%s\" a non-default service first, with pagerduty_add_service().",
						 other)));
}

/*
 * Add or replace a service.  The checks are made here first, so that a
 * mistake is reported plainly; the guard trigger makes them again for
 * every other way of writing the table.
 */
void
pd_add_service(const char *name, const char *routing_key, bool is_default,
			   const char *events_url)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, BOOLOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	SPIPlanPtr	plan;

	check_name_and_url(name, events_url);
	check_routing_key(name, routing_key);
	if (events_url != NULL)
		check_may_set_events_url(name);
	if (is_default)
		check_single_default(name);

	plan = pd_prepare(&upsert_plan,
					  "INSERT INTO pagerduty_services AS s (name, routing_key, is_default, events_url) "
					  "VALUES ($1, $2, $3, $4) "
					  "ON CONFLICT (name) DO UPDATE SET routing_key = excluded.routing_key, "
					  "is_default = excluded.is_default, events_url = excluded.events_url",
					  4, argtypes);
	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(routing_key);
	values[2] = BoolGetDatum(is_default);
	if (events_url != NULL)
		values[3] = CStringGetTextDatum(events_url);
	else
	{
		values[3] = (Datum) 0;
		nulls[3] = 'n';
	}
	pd_execute(plan, values, nulls, false, 0, SPI_OK_INSERT);
}

/*
 * BEFORE INSERT OR UPDATE trigger on pagerduty_services: a valid name and
 * routing key, at most one default service, and only superusers decide
 * where events go.  It guards every way of writing the table, not only
 * pagerduty_add_service().
 */
Datum
pagerduty_services_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	newtuple;
	char	   *name;
	char	   *events_url;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		elog(ERROR, "pagerduty_services_guard() must be a BEFORE INSERT OR UPDATE row trigger");

	desc = trigdata->tg_relation->rd_att;
	newtuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;

	name = get_text_column(newtuple, desc, "name");
	events_url = get_text_column(newtuple, desc, "events_url");
	check_name_and_url(name, events_url);
	/* the NOT NULL constraints would show the row, routing key and all */
	if (column_is_null(newtuple, desc, "is_default") ||
		column_is_null(newtuple, desc, "created_at"))
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("is_default and created_at of service \"%s\" must not be null", name),
				 errhidestmt(true)));
	check_routing_key(name, get_text_column(newtuple, desc, "routing_key"));

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		char	   *old = get_text_column(trigdata->tg_trigtuple, desc, "events_url");

		if ((old == NULL) != (events_url == NULL) ||
			(old != NULL && strcmp(old, events_url) != 0))
			check_may_set_events_url(name);
	}
	else if (events_url != NULL)
		check_may_set_events_url(name);

	if (get_bool_column(newtuple, desc, "is_default"))
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		check_single_default(name);
		SPI_finish();
	}

	return PointerGetDatum(newtuple);
}
