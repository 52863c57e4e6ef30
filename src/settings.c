/*-------------------------------------------------------------------------
 *
 * settings.c
 *	  Definitions of the pagerduty.* configuration parameters.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"

#include "settings.h"

char	   *pd_database = NULL;
char	   *pd_events_url = NULL;
int			pd_max_connections = 16;
int			pd_batch_size = 500;
int			pd_rate_limit = 120;
int			pd_max_attempts = 10;
int			pd_request_timeout_ms = 10000;
int			pd_connect_timeout_ms = 3000;
int			pd_retention_s = 7 * 24 * 3600;
char	   *pd_proxy = NULL;
char	   *pd_ca_file = NULL;
char	   *pd_client = NULL;
char	   *pd_client_url = NULL;

/*
 * True for an absolute http:// or https:// URL with something after the
 * scheme.  Other schemes are refused outright: libcurl would happily speak
 * file:// or gopher://, and events must only ever go to an HTTP endpoint.
 */
bool
pd_is_http_url(const char *url)
{
	if (url == NULL)
		return false;
	if (pg_strncasecmp(url, "https://", 8) == 0)
		return url[8] != '\0';
	if (pg_strncasecmp(url, "http://", 7) == 0)
		return url[7] != '\0';
	return false;
}

static bool
check_events_url(char **newval, void **extra, GucSource source)
{
	if (!pd_is_http_url(*newval))
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errdetail("pagerduty.events_url must be an http:// or https:// URL.");
		return false;
	}
	return true;
}

static bool
check_client_url(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0' || pd_is_http_url(*newval))
		return true;
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errdetail("pagerduty.client_url must be empty or an http:// or https:// URL.");
	return false;
}

static bool
check_proxy(char **newval, void **extra, GucSource source)
{
	const char *p = *newval;

	if (p == NULL || p[0] == '\0' || strstr(p, "://") != NULL)
		return true;
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errdetail("pagerduty.proxy must be empty or a URL such as http://proxy.example.com:3128.");
	return false;
}

void
pd_define_settings(void)
{
	/* read by the launcher only; a PGC_POSTMASTER setting can only be made at start */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomStringVariable("pagerduty.database",
								   "Database whose outbox the delivery worker serves.",
								   NULL,
								   &pd_database,
								   "postgres",
								   PGC_POSTMASTER,
								   0,
								   NULL, NULL, NULL);

	DefineCustomStringVariable("pagerduty.events_url",
							   "URL of the PagerDuty Events API v2 enqueue endpoint.",
							   "Change events go to the sibling /v2/change/enqueue URL. "
							   "EU accounts use https://events.eu.pagerduty.com/v2/enqueue.",
							   &pd_events_url,
							   PD_DEFAULT_EVENTS_URL,
							   PGC_SUSET,
							   0,
							   check_events_url, NULL, NULL);

	DefineCustomIntVariable("pagerduty.max_connections",
							"Maximum number of requests in flight at once.",
							NULL,
							&pd_max_connections,
							16, 1, 256,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pagerduty.batch_size",
							"Maximum number of events the worker claims per transaction.",
							NULL,
							&pd_batch_size,
							500, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pagerduty.rate_limit",
							"Maximum number of events per minute per routing key (0 disables the limiter).",
							"PagerDuty documents about 120 events a minute per routing key.",
							&pd_rate_limit,
							120, 0, 60000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pagerduty.max_attempts",
							"Attempts before an event that keeps failing is marked failed.",
							NULL,
							&pd_max_attempts,
							10, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pagerduty.request_timeout",
							"Time limit for one request to the Events API, connection included.",
							NULL,
							&pd_request_timeout_ms,
							10000, 100, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pagerduty.connect_timeout",
							"Time limit for connecting to the Events API.",
							NULL,
							&pd_connect_timeout_ms,
							3000, 100, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pagerduty.retention",
							"How long delivered and failed events are kept in the outbox (-1 keeps them forever).",
							NULL,
							&pd_retention_s,
							7 * 24 * 3600, -1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("pagerduty.proxy",
							   "HTTP(S) proxy for requests to the Events API (empty: none).",
							   NULL,
							   &pd_proxy,
							   "",
							   PGC_SUSET,
							   0,
							   check_proxy, NULL, NULL);

	DefineCustomStringVariable("pagerduty.ca_file",
							   "File of CA certificates to verify the Events API with (empty: the system's).",
							   NULL,
							   &pd_ca_file,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("pagerduty.client",
							   "Name of the monitoring client shown on PagerDuty alerts.",
							   NULL,
							   &pd_client,
							   "PostgreSQL",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("pagerduty.client_url",
							   "URL of the monitoring client shown on PagerDuty alerts (empty: omitted).",
							   NULL,
							   &pd_client_url,
							   "",
							   PGC_USERSET,
							   0,
							   check_client_url, NULL, NULL);

	MarkGUCPrefixReserved("pagerduty");
}
