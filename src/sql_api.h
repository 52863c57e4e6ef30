/*-------------------------------------------------------------------------
 *
 * sql_api.h
 *	  The SQL-callable functions: check input, resolve the service, build
 *	  the body, insert into the outbox.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAGERDUTY_SQL_API_H
#define PAGERDUTY_SQL_API_H

#include "utils/jsonb.h"

/*
 * Enqueue a trigger event; returns its dedup key, allocated to outlive
 * SPI_finish().  Caller is connected to SPI.
 */
extern char *pd_enqueue_trigger(Jsonb *event, const char *severity,
								const char *service, const char *dedup_key);

#endif							/* PAGERDUTY_SQL_API_H */
