/*-------------------------------------------------------------------------
 *
 * service.h
 *	  The PagerDuty services (integrations) events go to: resolving the
 *	  service an event names, and adding services.
 *
 *	  Callers are connected to SPI and run with the search_path set to the
 *	  extension's schema (the SQL functions are declared with it).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAGERDUTY_SERVICE_H
#define PAGERDUTY_SERVICE_H

extern char *pd_resolve_service(const char *name);
extern char *pd_default_service(void);
extern bool pd_service_exists(const char *name);
extern void pd_add_service(const char *name, const char *routing_key,
						   bool is_default, const char *events_url);

#endif							/* PAGERDUTY_SERVICE_H */
