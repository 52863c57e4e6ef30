/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The pagerduty launcher.
 *
 *	  A background worker cannot leave its database, and one that fails to
 *	  connect exits with FATAL and is restarted by the postmaster, again and
 *	  again.  So the process the postmaster starts, the launcher, connects to
 *	  no database.  It waits until pagerduty.database exists, then starts the
 *	  delivery worker (worker.c) as a dynamic background worker connected to
 *	  it, and starts it again when it exits, with a growing delay if it keeps
 *	  dying young.  It logs once that the database is missing, not once per
 *	  try.
 *
 *	  The launcher starts with BgWorkerStart_RecoveryFinished: on a standby
 *	  it does not run at all, and the postmaster starts it on promotion.
 *
 *	  DROP DATABASE (and RENAME, and using the database as a template) needs
 *	  the database to itself.  The utility hook calls
 *	  pd_launcher_release_database() first: that asks the worker to exit and
 *	  holds the launcher back until the transaction ends, so the worker never
 *	  blocks them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/timestamp.h"

#include "launcher.h"
#include "pagerduty.h"
#include "settings.h"

/*
 * How long the worker stays away from a database being dropped, at most:
 * the transaction that drops it lets it back as soon as it ends.
 */
#define PD_HOLD_MS				30000
/* how often to look for a missing database */
#define PD_DATABASE_POLL_MS		10000
/* restart delays of a worker that keeps exiting soon after it started */
#define PD_RESTART_MIN_MS		1000
#define PD_RESTART_MAX_MS		60000

void
pd_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pagerduty");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pagerduty_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pagerduty launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pagerduty launcher");
	RegisterBackgroundWorker(&worker);
}

bool
pd_launcher_release_database(const char *dbname)
{
	pid_t		pid;

	if (pd_shared == NULL || pd_database == NULL || strcmp(dbname, pd_database) != 0)
		return false;

	SpinLockAcquire(&pd_shared->mutex);
	pd_shared->hold_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), PD_HOLD_MS);
	pid = pd_shared->worker_pid;
	pd_shared->worker_asked_to_leave = (pid != 0);
	SpinLockRelease(&pd_shared->mutex);

	/* the worker exits on SIGTERM; DROP DATABASE waits for it to be gone */
	if (pid != 0)
		kill(pid, SIGTERM);
	return true;
}

void
pd_launcher_database_released(void)
{
	if (pd_shared == NULL)
		return;
	SpinLockAcquire(&pd_shared->mutex);
	pd_shared->hold_until = 0;
	SpinLockRelease(&pd_shared->mutex);
	pd_wake_launcher();
}

static void
launcher_detach(int code, Datum arg)
{
	SpinLockAcquire(&pd_shared->mutex);
	pd_shared->launcher_pid = 0;
	pd_shared->launcher_latch = NULL;
	SpinLockRelease(&pd_shared->mutex);
}

/*
 * The OID of pagerduty.database, or InvalidOid.  Not connected to any
 * database, the launcher can read pg_database only by a plain heap scan,
 * as the autovacuum launcher does.
 */
static Oid
lookup_database(void)
{
	Oid			dboid = InvalidOid;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), pd_database) == 0)
		{
			dboid = db->oid;
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dboid;
}

static BackgroundWorkerHandle *
start_worker(Oid dboid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;	/* the launcher restarts it */
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pagerduty");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pagerduty_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pagerduty worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pagerduty worker");
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		return NULL;
	return handle;
}

void
pagerduty_launcher_main(Datum main_arg)
{
	BackgroundWorkerHandle *handle = NULL;
	TimestampTz started_at = 0;
	TimestampTz next_start = 0;
	int			restart_delay_ms = PD_RESTART_MIN_MS;
	bool		said_missing = false;
	bool		said_no_slot = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* no database: shared catalogs only, and nothing that blocks DROP DATABASE */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	SpinLockAcquire(&pd_shared->mutex);
	pd_shared->launcher_pid = MyProcPid;
	pd_shared->launcher_latch = MyLatch;
	SpinLockRelease(&pd_shared->mutex);
	on_shmem_exit(launcher_detach, (Datum) 0);

	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		TimestampTz hold_until;
		pid_t		other_worker;
		bool		asked;
		long		wait_ms = PD_DATABASE_POLL_MS;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (handle != NULL)
		{
			pid_t		pid;

			switch (GetBackgroundWorkerPid(handle, &pid))
			{
				case BGWH_STOPPED:
					pfree(handle);
					handle = NULL;

					/*
					 * A worker that ran for a while, or that left because it
					 * was asked to, is started again after the shortest
					 * delay; one that keeps exiting young, after longer and
					 * longer ones.
					 */
					SpinLockAcquire(&pd_shared->mutex);
					asked = pd_shared->worker_asked_to_leave;
					pd_shared->worker_asked_to_leave = false;
					SpinLockRelease(&pd_shared->mutex);
					if (asked || TimestampDifferenceExceeds(started_at, now, PD_RESTART_MAX_MS))
						restart_delay_ms = PD_RESTART_MIN_MS;
					next_start = TimestampTzPlusMilliseconds(now, restart_delay_ms);
					if (!asked)
						restart_delay_ms = Min(restart_delay_ms * 2, PD_RESTART_MAX_MS);
					break;
				case BGWH_POSTMASTER_DIED:
					proc_exit(1);
					break;
				default:
					break;
			}
		}

		SpinLockAcquire(&pd_shared->mutex);
		hold_until = pd_shared->hold_until;
		other_worker = pd_shared->worker_pid;
		SpinLockRelease(&pd_shared->mutex);

		/*
		 * A worker started by an earlier launcher (this one was restarted)
		 * still runs: there must never be two, so wait for it to go.
		 */
		if (handle == NULL && other_worker != 0)
			wait_ms = 1000;
		else if (handle == NULL)
		{
			TimestampTz not_before = Max(next_start, hold_until);

			if (now < not_before)
				wait_ms = Min(wait_ms, TimestampDifferenceMilliseconds(now, not_before) + 1);
			else
			{
				Oid			dboid = lookup_database();

				if (!OidIsValid(dboid))
				{
					if (!said_missing)
						ereport(LOG,
								(errmsg("pagerduty: database \"%s\" does not exist; events will be delivered once it is created",
										pd_database),
								 errhint("Set pagerduty.database to the database where CREATE EXTENSION pagerduty was run.")));
					said_missing = true;
				}
				else
				{
					said_missing = false;
					handle = start_worker(dboid);
					if (handle == NULL)
					{
						if (!said_no_slot)
							ereport(WARNING,
									(errmsg("pagerduty: could not start the delivery worker"),
									 errhint("Raise max_worker_processes.")));
						said_no_slot = true;
					}
					else
					{
						said_no_slot = false;
						started_at = now;
					}
				}
			}
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(wait_ms, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
