/*-------------------------------------------------------------------------
 *
 * pagerduty.h
 *	  Shared state between backends, the launcher and the delivery worker,
 *	  and the commit-time wake-up.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAGERDUTY_H
#define PAGERDUTY_H

#include "datatype/timestamp.h"
#include "storage/latch.h"
#include "storage/spin.h"

typedef struct PdShared
{
	slock_t		mutex;

	/* the launcher, started by the postmaster once recovery has finished */
	pid_t		launcher_pid;
	Latch	   *launcher_latch;

	/* the delivery worker, started by the launcher */
	pid_t		worker_pid;
	Latch	   *worker_latch;
	Oid			worker_dboid;

	/*
	 * DROP DATABASE (or RENAME) of the worker's database asked the worker to
	 * leave; the launcher starts none before this time.
	 */
	TimestampTz hold_until;
	bool		worker_asked_to_leave;	/* its exit is not a failure */
} PdShared;

/* NULL unless the library was preloaded */
extern PdShared *pd_shared;

/* Called by the enqueue functions: wake the worker when this transaction commits. */
extern void pd_note_enqueue(void);
extern bool pd_enqueued_in_xact(void);

extern void pd_wake_worker(void);
extern void pd_wake_launcher(void);

#endif							/* PAGERDUTY_H */
