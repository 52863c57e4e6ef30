/*-------------------------------------------------------------------------
 *
 * alert.h
 *	  pagerduty_alert(), the trigger function for error-log tables.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAGERDUTY_ALERT_H
#define PAGERDUTY_ALERT_H

#include "nodes/parsenodes.h"

extern void pd_alert_check_create_trigger(CreateTrigStmt *stmt);

#endif							/* PAGERDUTY_ALERT_H */
