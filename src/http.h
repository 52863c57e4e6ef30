/*-------------------------------------------------------------------------
 *
 * http.h
 *	  Concurrent HTTP POSTs on one libcurl multi handle, waited for together
 *	  with the process latch.  Knows nothing of PagerDuty or of tables.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAGERDUTY_HTTP_H
#define PAGERDUTY_HTTP_H

#include "lib/ilist.h"

#define PD_HTTP_RESPONSE_MAX	2048
#define PD_HTTP_ERROR_MAX		256		/* CURL_ERROR_SIZE */

typedef struct PdHttpSettings
{
	int			max_connections;
	long		connect_timeout_ms;
	long		request_timeout_ms;
	const char *proxy;			/* "" for none */
	const char *ca_file;		/* "" for the system's */
} PdHttpSettings;

typedef struct PdHttpRequest
{
	/* set by the caller before pd_http_start(); must stay valid until done */
	const char *url;
	const char *body;
	size_t		body_len;
	void	   *owner;

	/* results, once pd_http_next_done() returned the request */
	int			curl_code;		/* CURLE_OK (0) if an HTTP response came */
	const char *curl_message;	/* curl's text for curl_code */
	char		error[PD_HTTP_ERROR_MAX];	/* curl's detail, may be "" */
	long		status;			/* HTTP status, 0 if none */
	long		retry_after_s;	/* Retry-After in seconds, 0 if none */
	double		seconds;		/* total time of the transfer */
	char		response[PD_HTTP_RESPONSE_MAX]; /* start of the body, NUL-ended */
	int			response_len;

	/* private */
	void	   *easy;
	void	   *headers;
	dlist_node	node;
} PdHttpRequest;

extern void pd_http_init(void);
extern void pd_http_configure(const PdHttpSettings *settings);
extern void pd_http_start(PdHttpRequest *req);
extern int	pd_http_in_flight(void);
extern bool pd_http_wait(long timeout_ms, uint32 wait_event_info);
extern PdHttpRequest *pd_http_next_done(void);
extern void pd_http_cancel_all(void);
extern bool pd_http_error_is_permanent(int curl_code);

#endif							/* PAGERDUTY_HTTP_H */
