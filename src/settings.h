/*-------------------------------------------------------------------------
 *
 * settings.h
 *	  The pagerduty.* configuration parameters (DESIGN §5).
 *
 * Context follows when a value is read: pagerduty.database only at
 * postmaster start, the worker's knobs at every SIGHUP, where events go
 * (events_url, proxy, ca_file) superuser-only, and the client name per
 * session because it is captured into the payload at enqueue time.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAGERDUTY_SETTINGS_H
#define PAGERDUTY_SETTINGS_H

#define PD_DEFAULT_EVENTS_URL "https://events.pagerduty.com/v2/enqueue"

extern char *pd_database;
extern char *pd_events_url;
extern int	pd_max_connections;
extern int	pd_batch_size;
extern int	pd_rate_limit;
extern int	pd_max_attempts;
extern int	pd_request_timeout_ms;
extern int	pd_connect_timeout_ms;
extern int	pd_retention_s;
extern char *pd_proxy;
extern char *pd_ca_file;
extern char *pd_client;
extern char *pd_client_url;

extern void pd_define_settings(void);
extern bool pd_is_http_url(const char *url);

#endif							/* PAGERDUTY_SETTINGS_H */
