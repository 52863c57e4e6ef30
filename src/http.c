/*-------------------------------------------------------------------------
 *
 * http.c
 *	  HTTP POSTs with libcurl's multi interface, in the worker process.
 *
 *	  Up to max_connections transfers run at once on one multi handle, which
 *	  keeps connections open between requests (connection reuse, HTTP/2
 *	  multiplexing when the server offers it).  curl tells us, through its
 *	  socket and timer callbacks, which sockets to watch and when; we wait on
 *	  those sockets and on the process latch in one WaitEventSet, so a
 *	  commit, SIGHUP or SIGTERM wakes the worker even while requests are in
 *	  flight.
 *
 *	  TLS peer and host verification are always on.  Only http and https
 *	  are allowed, and redirects are not followed.
 *
 *	  Every easy handle and header list is freed on every path: in
 *	  PG_FINALLY if starting a request fails, when the transfer completes,
 *	  and by pd_http_cancel_all(); the multi handle in an on_proc_exit
 *	  callback.  The curl callbacks never raise errors or allocate.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "http.h"

StaticAssertDecl(PD_HTTP_ERROR_MAX >= CURL_ERROR_SIZE,
				 "error buffer smaller than CURL_ERROR_SIZE");

/* the sockets curl asked us to watch */
typedef struct SocketWatch
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN, _OUT or _INOUT */
} SocketWatch;

#define PD_MAX_SOCKETS	1024

static CURLM *multi = NULL;
static SocketWatch sockets[PD_MAX_SOCKETS];
static int	nsockets = 0;
static bool timer_set = false;
static TimestampTz timer_deadline = 0;

static dlist_head in_flight = DLIST_STATIC_INIT(in_flight);
static int	n_in_flight = 0;
static dlist_head done = DLIST_STATIC_INIT(done);

/* current settings; strings live in TopMemoryContext */
static long connect_timeout_ms = 3000;
static long request_timeout_ms = 10000;
static char *proxy = NULL;
static char *ca_file = NULL;

#define PD_USER_AGENT "pagerduty-postgresql/1.0"

static void
check_curl(CURLcode rc, const char *what)
{
	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not set up an HTTP request: %s failed: %s",
						what, curl_easy_strerror(rc))));
}

#define SETOPT(easy, opt, val) check_curl(curl_easy_setopt((easy), (opt), (val)), #opt)

static void
check_multi(CURLMcode rc, const char *what)
{
	if (rc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("%s failed: %s", what, curl_multi_strerror(rc))));
}

/* CURLMOPT_SOCKETFUNCTION: watch, re-watch or forget a socket. */
static int
socket_callback(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int			i;

	for (i = 0; i < nsockets; i++)
	{
		if (sockets[i].fd == fd)
			break;
	}
	if (what == CURL_POLL_REMOVE)
	{
		if (i < nsockets)
			sockets[i] = sockets[--nsockets];
		return 0;
	}
	if (i == nsockets)
	{
		if (nsockets == PD_MAX_SOCKETS)
			return -1;			/* curl fails that transfer */
		sockets[nsockets].fd = fd;
		nsockets++;
	}
	sockets[i].what = what;
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: when curl wants to be called back. */
static int
timer_callback(CURLM *m, long timeout_ms, void *userp)
{
	timer_set = (timeout_ms >= 0);
	if (timer_set)
		timer_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

/* CURLOPT_WRITEFUNCTION: keep the start of the response body. */
static size_t
write_callback(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	PdHttpRequest *req = (PdHttpRequest *) userdata;
	size_t		n = size * nmemb;
	size_t		room = PD_HTTP_RESPONSE_MAX - 1 - req->response_len;
	size_t		keep = Min(n, room);

	memcpy(req->response + req->response_len, ptr, keep);
	req->response_len += keep;
	req->response[req->response_len] = '\0';
	return n;
}

/* Detach a request from curl and free its handles. */
static void
release(PdHttpRequest *req)
{
	if (req->easy != NULL)
	{
		curl_multi_remove_handle(multi, req->easy);
		curl_easy_cleanup(req->easy);
		req->easy = NULL;
	}
	if (req->headers != NULL)
	{
		curl_slist_free_all(req->headers);
		req->headers = NULL;
	}
}

void
pd_http_cancel_all(void)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &in_flight)
	{
		PdHttpRequest *req = dlist_container(PdHttpRequest, node, iter.cur);

		release(req);
		dlist_delete(&req->node);
	}
	n_in_flight = 0;
	dlist_init(&done);
}

static void
http_at_exit(int code, Datum arg)
{
	pd_http_cancel_all();
	if (multi != NULL)
	{
		curl_multi_cleanup(multi);
		multi = NULL;
	}
	curl_global_cleanup();
}

void
pd_http_init(void)
{
	CURLcode	rc = curl_global_init(CURL_GLOBAL_DEFAULT);

	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not initialize libcurl: %s", curl_easy_strerror(rc))));
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not create a libcurl multi handle")));
	on_proc_exit(http_at_exit, (Datum) 0);

	check_multi(curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_callback),
				"CURLMOPT_SOCKETFUNCTION");
	check_multi(curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_callback),
				"CURLMOPT_TIMERFUNCTION");
}

void
pd_http_configure(const PdHttpSettings *settings)
{
	long		max = settings->max_connections;

	check_multi(curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max),
				"CURLMOPT_MAX_TOTAL_CONNECTIONS");
	check_multi(curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, max),
				"CURLMOPT_MAX_HOST_CONNECTIONS");
	check_multi(curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, max),
				"CURLMOPT_MAXCONNECTS");

	connect_timeout_ms = settings->connect_timeout_ms;
	request_timeout_ms = settings->request_timeout_ms;
	if (proxy)
		pfree(proxy);
	proxy = MemoryContextStrdup(TopMemoryContext, settings->proxy ? settings->proxy : "");
	if (ca_file)
		pfree(ca_file);
	ca_file = MemoryContextStrdup(TopMemoryContext, settings->ca_file ? settings->ca_file : "");
}

/*
 * Start a POST of req->body to req->url.  On error nothing is left behind:
 * the handles are freed and the request is not in flight.
 */
void
pd_http_start(PdHttpRequest *req)
{
	CURL	   *volatile easy = NULL;
	struct curl_slist *volatile headers = NULL;
	volatile bool handed_over = false;

	req->curl_code = CURLE_OK;
	req->curl_message = "";
	req->error[0] = '\0';
	req->status = 0;
	req->retry_after_s = 0;
	req->seconds = 0;
	req->response[0] = '\0';
	req->response_len = 0;
	req->easy = NULL;
	req->headers = NULL;

	PG_TRY();
	{
		static const char *const header_lines[] = {
			"Content-Type: application/json",
			"Accept: application/json",
			"Expect:",			/* no 100-continue round trip for larger bodies */
		};

		easy = curl_easy_init();
		if (easy == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("could not create a libcurl easy handle")));
		for (int i = 0; i < lengthof(header_lines); i++)
		{
			struct curl_slist *h = curl_slist_append(headers, header_lines[i]);

			if (h == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_OUT_OF_MEMORY),
						 errmsg("out of memory")));
			headers = h;
		}

		SETOPT(easy, CURLOPT_PRIVATE, req);
		SETOPT(easy, CURLOPT_URL, req->url);
		SETOPT(easy, CURLOPT_PROTOCOLS_STR, "http,https");
		SETOPT(easy, CURLOPT_FOLLOWLOCATION, 0L);
		SETOPT(easy, CURLOPT_POST, 1L);
		SETOPT(easy, CURLOPT_POSTFIELDS, req->body);
		SETOPT(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
		SETOPT(easy, CURLOPT_HTTPHEADER, headers);
		SETOPT(easy, CURLOPT_USERAGENT, PD_USER_AGENT);
		SETOPT(easy, CURLOPT_NOSIGNAL, 1L);
		SETOPT(easy, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
		SETOPT(easy, CURLOPT_TIMEOUT_MS, request_timeout_ms);
		SETOPT(easy, CURLOPT_SSL_VERIFYPEER, 1L);
		SETOPT(easy, CURLOPT_SSL_VERIFYHOST, 2L);
		SETOPT(easy, CURLOPT_TCP_KEEPALIVE, 1L);
		SETOPT(easy, CURLOPT_PIPEWAIT, 1L);
		SETOPT(easy, CURLOPT_ERRORBUFFER, req->error);
		SETOPT(easy, CURLOPT_WRITEFUNCTION, write_callback);
		SETOPT(easy, CURLOPT_WRITEDATA, req);
		/* "" also keeps curl from taking a proxy from the environment */
		SETOPT(easy, CURLOPT_PROXY, proxy);
		if (ca_file[0] != '\0')
			SETOPT(easy, CURLOPT_CAINFO, ca_file);

		check_multi(curl_multi_add_handle(multi, easy), "curl_multi_add_handle");
		req->easy = easy;
		req->headers = headers;
		dlist_push_tail(&in_flight, &req->node);
		n_in_flight++;
		handed_over = true;
	}
	PG_FINALLY();
	{
		if (!handed_over)
		{
			if (easy != NULL)
				curl_easy_cleanup(easy);
			if (headers != NULL)
				curl_slist_free_all(headers);
		}
	}
	PG_END_TRY();
}

int
pd_http_in_flight(void)
{
	return n_in_flight;
}

/* Move finished transfers to the done list, with their results. */
static void
collect_done(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		PdHttpRequest *req = NULL;
		curl_off_t	retry_after = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		if (req == NULL)
			continue;
		req->curl_code = msg->data.result;
		req->curl_message = curl_easy_strerror(msg->data.result);
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &req->status);
		curl_easy_getinfo(msg->easy_handle, CURLINFO_TOTAL_TIME, &req->seconds);
		if (curl_easy_getinfo(msg->easy_handle, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK)
			req->retry_after_s = (long) retry_after;

		release(req);
		dlist_delete(&req->node);
		n_in_flight--;
		dlist_push_tail(&done, &req->node);
	}
}

/*
 * curl_multi_socket_action() fails only on a bad socket or handle, which
 * would be our bug; the transfers themselves report their own errors.
 */
static void
check_action(CURLMcode rc)
{
	if (rc != CURLM_OK)
		elog(WARNING, "curl_multi_socket_action failed: %s", curl_multi_strerror(rc));
}

/*
 * One wait on the latch and curl's sockets; fills 'events' and returns how
 * many fired.  The wait event set is freed even if the wait raises an error.
 */
static int
wait_for_events(long timeout, WaitEvent *events, int max_events,
				uint32 wait_event_info)
{
	WaitEventSet *volatile set = NULL;
	volatile int nevents = 0;

	PG_TRY();
	{
		set = CreateWaitEventSet(CurrentMemoryContext, nsockets + 2);
		AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (int i = 0; i < nsockets; i++)
		{
			uint32		ev = 0;

			if (sockets[i].what & CURL_POLL_IN)
				ev |= WL_SOCKET_READABLE;
			if (sockets[i].what & CURL_POLL_OUT)
				ev |= WL_SOCKET_WRITEABLE;
			if (ev != 0)
				AddWaitEventToSet(set, ev, sockets[i].fd, NULL, NULL);
		}
		nevents = WaitEventSetWait(set, timeout, events, max_events, wait_event_info);
	}
	PG_FINALLY();
	{
		if (set != NULL)
			FreeWaitEventSet(set);
	}
	PG_END_TRY();
	return nevents;
}

/*
 * Wait up to timeout_ms for the latch or for network activity, and let
 * curl make progress.  Returns true if the latch was set (the caller resets
 * it).  Finished requests are then returned by pd_http_next_done().
 */
bool
pd_http_wait(long timeout_ms, uint32 wait_event_info)
{
	WaitEvent  *events;
	int			max_events = nsockets + 2;
	int			nevents;
	int			running;
	bool		latch_set = false;
	long		timeout = Max(timeout_ms, 0);

	if (timer_set)
		timeout = Min(timeout, TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
															   timer_deadline));

	events = palloc(sizeof(WaitEvent) * max_events);
	nevents = wait_for_events(timeout, events, max_events, wait_event_info);
	for (int i = 0; i < nevents; i++)
	{
		int			mask = 0;

		if (events[i].events & WL_LATCH_SET)
		{
			latch_set = true;
			continue;
		}
		if (events[i].events & WL_SOCKET_READABLE)
			mask |= CURL_CSELECT_IN;
		if (events[i].events & WL_SOCKET_WRITEABLE)
			mask |= CURL_CSELECT_OUT;
		if (mask != 0)
			check_action(curl_multi_socket_action(multi, events[i].fd, mask, &running));
	}
	pfree(events);

	if (timer_set && GetCurrentTimestamp() >= timer_deadline)
	{
		timer_set = false;
		check_action(curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running));
	}
	collect_done();
	return latch_set;
}

PdHttpRequest *
pd_http_next_done(void)
{
	if (dlist_is_empty(&done))
		return NULL;
	return dlist_container(PdHttpRequest, node, dlist_pop_head_node(&done));
}

/* A transfer error that no retry can fix: the URL itself is wrong. */
bool
pd_http_error_is_permanent(int curl_code)
{
	return curl_code == CURLE_UNSUPPORTED_PROTOCOL ||
		curl_code == CURLE_URL_MALFORMAT;
}
