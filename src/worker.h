/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The delivery worker: reads the outbox and sends events.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAGERDUTY_WORKER_H
#define PAGERDUTY_WORKER_H

extern PGDLLEXPORT void pagerduty_worker_main(Datum main_arg);

#endif							/* PAGERDUTY_WORKER_H */
