/*-------------------------------------------------------------------------
 *
 * alert.c
 *	  pagerduty_alert(): the trigger function for error-log tables.
 *
 *	  CREATE TRIGGER app_errors_page AFTER INSERT ON app_errors
 *	      FOR EACH ROW WHEN (NEW.level IN ('error', 'fatal'))
 *	      EXECUTE FUNCTION pagerduty_alert('database', 'default');
 *
 *	  The new row, as jsonb, is the event, so columns named level, message,
 *	  culprit, transaction, dedup_key, url, ... map by the payload rules with
 *	  no configuration.  The arguments are service names (none: the default
 *	  service), then optionally a severity as the last one: critical, error,
 *	  warning, info, or default (from the row's level).  One event is
 *	  enqueued per service.
 *
 *	  CREATE TRIGGER is checked when it runs (through the utility hook, when
 *	  the library is preloaded): a table that has no column a summary can
 *	  come from, a DELETE or statement-level trigger, or an unknown service
 *	  is refused then rather than at the first insert.
 *
 *	  The function is not SECURITY DEFINER: the row is turned into jsonb with
 *	  the rights of whoever inserted it (to_jsonb may call the casts of its
 *	  column types, which are the table owner's code, not ours).  Only the
 *	  enqueue itself runs as the extension's owner, in a restricted security
 *	  context with the search_path fixed, so that a role with no right on
 *	  the extension's tables can still page.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "alert.h"
#include "payload.h"
#include "service.h"
#include "sql_api.h"

PG_FUNCTION_INFO_V1(pagerduty_alert);

/* The trigger's arguments: services, then maybe a severity. */
typedef struct AlertArgs
{
	int			nservices;
	char	  **services;
	const char *severity;		/* NULL: from the row's level */
} AlertArgs;

static bool
is_severity_word(const char *s)
{
	static const char *const words[] = {"critical", "error", "warning", "info", "default"};

	for (int i = 0; i < lengthof(words); i++)
	{
		if (pg_strcasecmp(s, words[i]) == 0)
			return true;
	}
	return false;
}

static void
parse_args(int nargs, char **args, AlertArgs *out)
{
	out->services = args;
	out->nservices = nargs;
	out->severity = NULL;
	if (nargs > 0 && is_severity_word(args[nargs - 1]))
	{
		out->severity = pd_check_severity_argument(args[nargs - 1]);
		out->nservices = nargs - 1;
	}
}

/* The columns a summary can come from (DESIGN §3). */
static bool
has_summary_column(TupleDesc desc)
{
	static const char *const names[] = {"summary", "message", "title"};

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		for (int j = 0; j < lengthof(names); j++)
		{
			if (strcmp(NameStr(att->attname), names[j]) == 0)
				return true;
		}
	}
	return false;
}

static void
report_no_summary_column(Relation rel)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("table \"%s\" has no column \"message\"",
					RelationGetRelationName(rel)),
			 errdetail("pagerduty_alert() takes the summary of an alert from the column \"summary\", \"message\" or \"title\" of the row."),
			 errhint("Add one of these columns to \"%s\", or call pagerduty_trigger() from a trigger function of your own.",
					 RelationGetRelationName(rel))));
}

/*
 * The row as jsonb, by calling to_jsonb(anyelement) with an expression that
 * tells it the row type.  The FmgrInfo is kept across calls of the trigger.
 */
typedef struct AlertCache
{
	Oid			owner;			/* of pagerduty_alert(): the extension's owner */
	Oid			nsp;			/* its schema */
	Oid			rowtype;		/* the row type flinfo is set up for */
	FmgrInfo	flinfo;			/* to_jsonb(anyelement) */
} AlertCache;

static bool is_pagerduty_alert(Oid funcoid, Oid *owner, Oid *nsp);

static AlertCache *
get_cache(FunctionCallInfo fcinfo)
{
	AlertCache *cache = (AlertCache *) fcinfo->flinfo->fn_extra;

	if (cache == NULL)
	{
		cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(AlertCache));
		if (!is_pagerduty_alert(fcinfo->flinfo->fn_oid, &cache->owner, &cache->nsp))
			elog(ERROR, "could not find function %u", fcinfo->flinfo->fn_oid);
		fcinfo->flinfo->fn_extra = cache;
	}
	return cache;
}

static Jsonb *
row_to_jsonb(FunctionCallInfo fcinfo, HeapTuple tuple, TupleDesc desc)
{
	AlertCache *cache = get_cache(fcinfo);
	MemoryContext fn_mcxt = fcinfo->flinfo->fn_mcxt;

	if (cache->rowtype != desc->tdtypeid)
	{
		MemoryContext old = MemoryContextSwitchTo(fn_mcxt);
		FuncExpr   *expr;

		cache->rowtype = desc->tdtypeid;
		fmgr_info_cxt(F_TO_JSONB, &cache->flinfo, fn_mcxt);
		expr = makeFuncExpr(F_TO_JSONB, JSONBOID,
							list_make1(makeNullConst(desc->tdtypeid, -1, InvalidOid)),
							InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
		fmgr_info_set_expr((Node *) expr, &cache->flinfo);
		MemoryContextSwitchTo(old);
	}
	return DatumGetJsonbP(FunctionCall1(&cache->flinfo,
										heap_copy_tuple_as_datum(tuple, desc)));
}

/* Running a piece of work as the extension's owner. */
typedef struct AsOwner
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} AsOwner;

/*
 * Become the extension's owner, in a restricted security context, with the
 * search_path set to the extension's schema, and connect to SPI: what
 * SECURITY DEFINER ... SET search_path would do, for the enqueue only.
 * An error on the way is cleaned up by the transaction's abort.
 */
static void
begin_as_owner(AsOwner *as, Oid owner, Oid nsp)
{
	char	   *nspname = get_namespace_name(nsp);

	if (nspname == NULL)
		elog(ERROR, "cache lookup failed for namespace %u", nsp);
	GetUserIdAndSecContext(&as->save_userid, &as->save_sec_context);
	SetUserIdAndSecContext(owner, as->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	as->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path",
							 psprintf("%s, pg_temp", quote_identifier(nspname)),
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

static void
end_as_owner(AsOwner *as)
{
	SPI_finish();
	AtEOXact_GUC(true, as->save_nestlevel);
	SetUserIdAndSecContext(as->save_userid, as->save_sec_context);
}

Datum
pagerduty_alert(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	HeapTuple	tuple;
	AlertArgs	args;
	Jsonb	   *event;
	AlertCache *cache;
	AsOwner		as;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pagerduty_alert() can only be called as a trigger"),
				 errhint("To send an event from SQL, use pagerduty_trigger().")));
	if (!TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(td->tg_event) || TRIGGER_FIRED_BY_UPDATE(td->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pagerduty_alert() must be fired FOR EACH ROW on INSERT or UPDATE")));

	trigger = td->tg_trigger;
	tuple = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;

	if (!has_summary_column(td->tg_relation->rd_att))
		report_no_summary_column(td->tg_relation);
	parse_args(trigger->tgnargs, trigger->tgargs, &args);

	/* with the inserting role's rights */
	event = row_to_jsonb(fcinfo, tuple, td->tg_relation->rd_att);

	/* with the extension owner's */
	cache = get_cache(fcinfo);
	begin_as_owner(&as, cache->owner, cache->nsp);
	if (args.nservices == 0)
		pd_enqueue_trigger(event, args.severity, NULL, NULL);
	for (int i = 0; i < args.nservices; i++)
		pd_enqueue_trigger(event, args.severity, args.services[i], NULL);
	end_as_owner(&as);

	/* the row goes on unchanged (this matters only for BEFORE triggers) */
	return PointerGetDatum(tuple);
}

/* ----------------------------------------------------------------
 *		CREATE TRIGGER ... EXECUTE FUNCTION pagerduty_alert(...)
 * ----------------------------------------------------------------
 */

/* Is funcoid our pagerduty_alert()?  Sets *owner and *nsp if so. */
static bool
is_pagerduty_alert(Oid funcoid, Oid *owner, Oid *nsp)
{
	HeapTuple	tup;
	bool		result = false;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcoid));
	if (!HeapTupleIsValid(tup))
		return false;
	if (((Form_pg_proc) GETSTRUCT(tup))->prolang == ClanguageId)
	{
		bool		isnull;
		Datum		src = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull);
		Datum		bin = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_probin, &isnull);

		if (!isnull &&
			strcmp(TextDatumGetCString(src), "pagerduty_alert") == 0 &&
			strstr(TextDatumGetCString(bin), "pagerduty") != NULL)
		{
			*owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
			*nsp = ((Form_pg_proc) GETSTRUCT(tup))->pronamespace;
			result = true;
		}
	}
	ReleaseSysCache(tup);
	return result;
}

/*
 * Check that the named services exist, as the extension's owner would see
 * them: whoever creates the trigger may have no right to read the table.
 * Not while pg_dump's output is restored (check_function_bodies is off) or
 * during pg_upgrade: a schema-only dump has no services yet.
 */
static void
check_services(AlertArgs *args, Oid owner, Oid nsp)
{
	AsOwner		as;

	if (args->nservices == 0 || !check_function_bodies || IsBinaryUpgrade)
		return;

	begin_as_owner(&as, owner, nsp);
	for (int i = 0; i < args->nservices; i++)
	{
		if (!pd_service_exists(args->services[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown service \"%s\"", args->services[i]),
					 errdetail("The arguments of pagerduty_alert() are service names, then optionally a severity: critical, error, warning, info or default."),
					 errhint("Add the service with pagerduty_add_service(), or correct the argument.")));
	}
	end_as_owner(&as);
}

/*
 * Called after CREATE TRIGGER has run.  If the trigger calls
 * pagerduty_alert(), check what can be checked before the first insert.
 */
void
pd_alert_check_create_trigger(CreateTrigStmt *stmt)
{
	Oid			funcoid;
	Oid			owner;
	Oid			nsp;
	Relation	rel;
	AlertArgs	args;
	char	  **argv;
	int			nargs;
	ListCell   *lc;
	int			i = 0;

	funcoid = LookupFuncName(stmt->funcname, 0, NULL, true);
	if (!OidIsValid(funcoid) || !is_pagerduty_alert(funcoid, &owner, &nsp))
		return;

	if (!stmt->row ||
		(stmt->events & (TRIGGER_TYPE_DELETE | TRIGGER_TYPE_TRUNCATE)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("pagerduty_alert() must be fired FOR EACH ROW on INSERT or UPDATE"),
				 errhint("Use AFTER INSERT ... FOR EACH ROW, with a WHEN condition as the alert rule.")));

	rel = table_openrv(stmt->relation, AccessShareLock);
	if (!has_summary_column(RelationGetDescr(rel)))
		report_no_summary_column(rel);
	table_close(rel, AccessShareLock);

	nargs = list_length(stmt->args);
	argv = palloc(sizeof(char *) * Max(nargs, 1));
	foreach(lc, stmt->args)
		argv[i++] = strVal(lfirst(lc));
	parse_args(nargs, argv, &args);
	check_services(&args, owner, nsp);
}
