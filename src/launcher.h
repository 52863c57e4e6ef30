/*-------------------------------------------------------------------------
 *
 * launcher.h
 *	  The launcher: starts the delivery worker for pagerduty.database once
 *	  the server accepts writes and the database exists, and restarts it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAGERDUTY_LAUNCHER_H
#define PAGERDUTY_LAUNCHER_H

extern void pd_register_launcher(void);

/* in a backend about to DROP, RENAME, ... the worker's database */
extern bool pd_launcher_release_database(const char *dbname);
extern void pd_launcher_database_released(void);

extern PGDLLEXPORT void pagerduty_launcher_main(Datum main_arg);

#endif							/* PAGERDUTY_LAUNCHER_H */
