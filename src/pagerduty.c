/*-------------------------------------------------------------------------
 *
 * pagerduty.c
 *	  Library entry point: settings, shared memory, the launcher's
 *	  registration, the wake-up at commit and the utility hook.
 *
 *	  Loaded without shared_preload_libraries, it only defines the settings:
 *	  the SQL functions still enqueue (and CREATE EXTENSION warns that
 *	  nothing will be delivered).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/acl.h"

#include "alert.h"
#include "launcher.h"
#include "pagerduty.h"
#include "settings.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

PdShared   *pd_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* wake the worker when this transaction commits */
static bool wake_at_commit = false;

/* this transaction enqueued events (pagerduty_wait() cannot wait for them) */
static bool enqueued_in_xact = false;

/* this transaction created a database: the launcher may be waiting for it */
static bool wake_launcher_at_commit = false;

/* this transaction asked the worker to leave its database (DROP DATABASE...) */
static bool release_at_xact_end = false;

static void
pd_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(PdShared)));
}

static void
pd_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pd_shared = ShmemInitStruct("pagerduty", sizeof(PdShared), &found);
	if (!found)
	{
		memset(pd_shared, 0, sizeof(PdShared));
		SpinLockInit(&pd_shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
set_latch_of(Latch *const *slot)
{
	Latch	   *latch;

	if (pd_shared == NULL)
		return;
	SpinLockAcquire(&pd_shared->mutex);
	latch = *slot;
	SpinLockRelease(&pd_shared->mutex);
	/* a stale latch only causes a spurious wake-up */
	if (latch != NULL)
		SetLatch(latch);
}

void
pd_wake_worker(void)
{
	if (pd_shared)
		set_latch_of(&pd_shared->worker_latch);
}

void
pd_wake_launcher(void)
{
	if (pd_shared)
		set_latch_of(&pd_shared->launcher_latch);
}

void
pd_note_enqueue(void)
{
	wake_at_commit = true;
	enqueued_in_xact = true;
}

bool
pd_enqueued_in_xact(void)
{
	return enqueued_in_xact;
}

/*
 * Wake the worker once the transaction that enqueued has committed (the
 * COMMIT callback runs after the transaction became visible), so that
 * commit-to-send takes milliseconds, not a polling period.  Events of a
 * transaction that aborts are gone with it and wake nobody.
 */
static void
pd_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit)
				pd_wake_worker();
			if (wake_launcher_at_commit)
				pd_wake_launcher();
			wake_at_commit = wake_launcher_at_commit = enqueued_in_xact = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction's events go when the safety-net poll sees them */
			wake_at_commit = wake_launcher_at_commit = enqueued_in_xact = false;
			break;
		default:
			return;
	}

	/*
	 * The DROP (or RENAME) that sent the worker away is over, committed or
	 * not: the launcher looks again, and finds the database or not.
	 */
	if (release_at_xact_end)
	{
		release_at_xact_end = false;
		pd_launcher_database_released();
	}
}

/*
 * The database a statement needs to have no other sessions in, or NULL.
 * *top_level_only: the statement cannot run in a transaction block.
 */
static const char *
database_needing_exclusive_access(Node *stmt, bool *top_level_only)
{
	ListCell   *lc;

	*top_level_only = false;
	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			*top_level_only = true;
			return ((DropdbStmt *) stmt)->dbname;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
				return ((RenameStmt *) stmt)->subname;
			return NULL;
		case T_CreatedbStmt:
			*top_level_only = true;
			foreach(lc, ((CreatedbStmt *) stmt)->options)
			{
				DefElem    *opt = lfirst_node(DefElem, lc);

				if (strcmp(opt->defname, "template") == 0 && opt->arg != NULL)
					return defGetString(opt);
			}
			return NULL;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) stmt)->options)
			{
				DefElem    *opt = lfirst_node(DefElem, lc);

				if (strcmp(opt->defname, "tablespace") == 0)
					return ((AlterDatabaseStmt *) stmt)->dbname;
			}
			return NULL;
		default:
			return NULL;
	}
}

/*
 * The utility hook:
 *	- DROP DATABASE (and the other commands that need a database to
 *	  themselves) of the worker's database first asks the worker to leave,
 *	  so the worker never blocks them;
 *	- CREATE TRIGGER ... pagerduty_alert() is checked when it runs;
 *	- CREATE EXTENSION pagerduty and CREATE DATABASE wake whoever waits for
 *	  them, at commit.
 */
static void
pd_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
				  bool readOnlyTree, ProcessUtilityContext context,
				  ParamListInfo params, QueryEnvironment *queryEnv,
				  DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	const char *exclusive_db = NULL;
	bool		top_level_only;

	/*
	 * Ask the worker to leave before the command looks for other sessions;
	 * it may come back when this transaction ends, whichever way.  Only for
	 * a command that can succeed: run by the database's owner (every one of
	 * these commands requires that), and outside a transaction block where
	 * it must be.  Otherwise anyone could keep the worker away by issuing
	 * commands bound to fail.
	 */
	if (pd_shared != NULL)
		exclusive_db = database_needing_exclusive_access(stmt, &top_level_only);
	if (exclusive_db != NULL && !(top_level_only && IsTransactionBlock()))
	{
		Oid			dboid = get_database_oid(exclusive_db, true);

		if (OidIsValid(dboid) && pg_database_ownercheck(dboid, GetUserId()) &&
			pd_launcher_release_database(exclusive_db))
			release_at_xact_end = true;
	}

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

	if (IsA(stmt, CreateTrigStmt))
		pd_alert_check_create_trigger((CreateTrigStmt *) stmt);
	else if (IsA(stmt, CreateExtensionStmt) &&
			 strcmp(((CreateExtensionStmt *) stmt)->extname, "pagerduty") == 0)
		wake_at_commit = true;	/* the worker waits for the extension */
	else if (IsA(stmt, CreatedbStmt))
		wake_launcher_at_commit = true;
}

void
_PG_init(void)
{
	pd_define_settings();

	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = pd_ProcessUtility;
	RegisterXactCallback(pd_xact_callback, NULL);

	/* without preloading: no worker, no shared memory, nothing more to do */
	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pd_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pd_shmem_startup;

	pd_register_launcher();
}
