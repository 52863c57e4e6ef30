/*-------------------------------------------------------------------------
 *
 * payload.h
 *	  From an event (any JSON object) to a PagerDuty Events API v2 body,
 *	  by the rules of DESIGN §3.
 *
 * Pure: no SPI, no catalog access, no curl.  The caller passes in the
 * settings and the resolved service name, so that pagerduty_build_payload()
 * and the enqueue functions produce exactly the same body.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAGERDUTY_PAYLOAD_H
#define PAGERDUTY_PAYLOAD_H

#include "utils/jsonb.h"
#include "utils/timestamp.h"

/* PagerDuty's documented limits */
#define PD_SUMMARY_MAX_CHARS	1024
#define PD_DEDUP_KEY_MAX_CHARS	255
#define PD_BODY_MAX_BYTES		(512 * 1024)
#define PD_ROUTING_KEY_LEN		32

typedef enum PdAction
{
	PD_ACTION_TRIGGER,
	PD_ACTION_ACKNOWLEDGE,
	PD_ACTION_RESOLVE,
	PD_ACTION_CHANGE
} PdAction;

/* What a body is built from. */
typedef struct PdEventInput
{
	Jsonb	   *event;			/* the event: a JSON object (trigger, change) */
	const char *severity;		/* severity argument, or NULL */
	const char *dedup_key;		/* dedup key argument, or NULL */
	const char *service;		/* resolved service name (for the default
								 * dedup key) */
	const char *client;			/* pagerduty.client ("" omits it) */
	const char *client_url;		/* pagerduty.client_url ("" omits it) */
	TimestampTz enqueued_at;	/* used when the event has no valid time */
} PdEventInput;

/* What was built. */
typedef struct PdPayload
{
	char	   *body;			/* the JSON body, routing_key left out */
	int			body_len;		/* strlen(body) */
	const char *severity;		/* resolved severity (trigger only) */
	char	   *dedup_key;		/* resolved dedup key (NULL for change) */
	bool		details_replaced;	/* the 512 KB rule applied */
} PdPayload;

extern const char *pd_action_name(PdAction action);
extern const char *pd_severity_from_level(const char *level);
extern const char *pd_check_severity_argument(const char *severity);
extern void pd_check_dedup_key(const char *dedup_key);

extern void pd_build_trigger(const PdEventInput *in, PdPayload *out);
extern void pd_build_change(const PdEventInput *in, PdPayload *out);
extern void pd_build_ack_resolve(PdAction action, const char *dedup_key,
								 PdPayload *out);

extern char *pd_body_with_routing_key(const char *body, int body_len,
									  const char *routing_key, int *out_len);
extern char *pd_change_events_url(const char *events_url);
extern char *pd_response_errors(const char *body, int len);

#endif							/* PAGERDUTY_PAYLOAD_H */
