/*-------------------------------------------------------------------------
 *
 * payload.c
 *	  Build PagerDuty Events API v2 bodies from events, the way Sentry's
 *	  PagerDuty integration does (DESIGN §3):
 *
 *	  summary         summary, else message, else title; cut to 1024 characters
 *	  source          source, else transaction, else culprit, else '<unknown>'
 *	  severity        the argument, else mapped from the event's level
 *	  timestamp       the event's timestamp when it is a valid time, else the
 *	                  enqueue time
 *	  component, group, class   copied when present
 *	  custom_details  the whole event, unless the body would pass 512 KB
 *	  links, images   the event's links/images, and its url as a link
 *	  client, client_url        from settings
 *	  dedup_key       the argument, else the event's dedup_key, else a stable
 *	                  hash of service, source and summary
 *
 *	  The body is built as jsonb and stored as its text, which is exactly
 *	  what the worker sends once it has put the routing key in front.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/cryptohash.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "payload.h"

/* room for '"routing_key": "<32 characters>", ' added at send time */
#define PD_ROUTING_KEY_ROOM		64

/* How much of the event goes into the body. */
typedef enum PdDetail
{
	PD_DETAIL_FULL,				/* custom_details is the event */
	PD_DETAIL_NOTE,				/* custom_details is a note: event too big */
	PD_DETAIL_MINIMAL			/* also no links/images, long fields cut */
} PdDetail;

/* The fields of a trigger or change event, resolved from the event. */
typedef struct PdFields
{
	char	   *summary;
	char	   *source;
	const char *severity;
	char	   *timestamp;
	char	   *component;
	char	   *group;
	char	   *class;
	char	   *dedup_key;
} PdFields;

const char *
pd_action_name(PdAction action)
{
	switch (action)
	{
		case PD_ACTION_TRIGGER:
			return "trigger";
		case PD_ACTION_ACKNOWLEDGE:
			return "acknowledge";
		case PD_ACTION_RESOLVE:
			return "resolve";
		case PD_ACTION_CHANGE:
			return "change";
	}
	return "trigger";			/* keep compiler quiet */
}

/* ----------------------------------------------------------------
 *		Severity
 * ----------------------------------------------------------------
 */

/*
 * The severity map: Sentry's levels (debug, info, warning, error, fatal),
 * PostgreSQL's own (DEBUG1-5, LOG, NOTICE, PANIC, ...), PagerDuty's
 * severities, and the common spellings of syslog and logging libraries.
 */
typedef struct LevelMap
{
	const char *level;
	const char *severity;
} LevelMap;

static const LevelMap level_map[] = {
	{"debug", "info"}, {"debug1", "info"}, {"debug2", "info"},
	{"debug3", "info"}, {"debug4", "info"}, {"debug5", "info"},
	{"trace", "info"}, {"info", "info"}, {"log", "info"},
	{"notice", "info"},
	{"warning", "warning"}, {"warn", "warning"},
	{"error", "error"}, {"err", "error"},
	{"fatal", "critical"}, {"panic", "critical"}, {"critical", "critical"},
	{"crit", "critical"}, {"alert", "critical"}, {"emerg", "critical"},
	{"emergency", "critical"},
};

/*
 * Map an event's level to a PagerDuty severity, case-insensitively.
 * A missing level is "error", as in Sentry; so is a level this map does not
 * know: the level is data (a row of an error log, say), and an alert must
 * not be refused because of how a logger spells its levels.
 */
const char *
pd_severity_from_level(const char *level)
{
	if (level == NULL)
		return "error";
	for (int i = 0; i < lengthof(level_map); i++)
	{
		if (pg_strcasecmp(level, level_map[i].level) == 0)
			return level_map[i].severity;
	}
	return "error";
}

/*
 * Check a severity argument.  Returns the PagerDuty severity, or NULL for
 * "take it from the event's level" (NULL or 'default').  The argument is
 * code, not data, so anything else is an error.
 */
const char *
pd_check_severity_argument(const char *severity)
{
	static const char *const valid[] = {"critical", "error", "warning", "info"};

	if (severity == NULL || pg_strcasecmp(severity, "default") == 0)
		return NULL;
	for (int i = 0; i < lengthof(valid); i++)
	{
		if (pg_strcasecmp(severity, valid[i]) == 0)
			return valid[i];
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid severity \"%s\"", severity),
			 errhint("Valid values are critical, error, warning, info and default.")));
	return NULL;				/* keep compiler quiet */
}

/* ----------------------------------------------------------------
 *		Reading the event
 * ----------------------------------------------------------------
 */

/*
 * The text of a scalar JSON value (string, number, boolean); NULL for JSON
 * null, objects and arrays.
 */
static char *
scalar_text(JsonbValue *v)
{
	if (v == NULL)
		return NULL;
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

static JsonbValue *
get_key(JsonbContainer *obj, const char *key)
{
	JsonbValue *res = palloc(sizeof(JsonbValue));

	if (getKeyJsonValueFromContainer(obj, key, strlen(key), res) == NULL)
	{
		pfree(res);
		return NULL;
	}
	return res;
}

/* true if the string has something besides white space */
static bool
has_text(const char *s)
{
	if (s == NULL)
		return false;
	for (; *s; s++)
	{
		if (!isspace((unsigned char) *s))
			return true;
	}
	return false;
}

/*
 * The text of the first of the given fields that is a scalar with some
 * text in it, or NULL.
 */
static char *
first_text(JsonbContainer *obj, const char *const *keys, int nkeys)
{
	for (int i = 0; i < nkeys; i++)
	{
		char	   *s = scalar_text(get_key(obj, keys[i]));

		if (has_text(s))
			return s;
	}
	return NULL;
}

/* Cut a string to at most max_chars characters, never inside a character. */
static char *
cut_chars(char *s, int max_chars)
{
	int			len = strlen(s);
	int			keep = pg_mbcharcliplen(s, len, max_chars);

	if (keep < len)
		s[keep] = '\0';
	return s;
}

static bool
is_http_url(const char *s)
{
	return s != NULL &&
		(pg_strncasecmp(s, "https://", 8) == 0 ||
		 pg_strncasecmp(s, "http://", 7) == 0);
}

/*
 * An ISO 8601 rendering (UTC, microseconds) of a timestamp, e.g.
 * 2026-12-04T15:33:21.123456Z; NULL if it does not fit that form.
 */
static char *
iso8601(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(ts) ||
		timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0 ||
		tm.tm_year < 1 || tm.tm_year > 9999)
		return NULL;
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/*
 * Words PostgreSQL's date input takes relative to the current time
 * ('yesterday', 'now', ...): they say when the event was parsed, not when
 * it happened.
 */
static bool
has_relative_word(char **field, int *ftype, int nf)
{
	static const char *const words[] = {"now", "today", "tomorrow", "yesterday",
	"epoch", "infinity", "-infinity", "allballs"};

	for (int i = 0; i < nf; i++)
	{
		if (ftype[i] != DTK_STRING && ftype[i] != DTK_SPECIAL)
			continue;
		for (int j = 0; j < lengthof(words); j++)
		{
			if (pg_strcasecmp(field[i], words[j]) == 0)
				return true;
		}
	}
	return false;
}

/*
 * The event's timestamp, when it is a valid time: a date-time string that
 * PostgreSQL's timestamptz input accepts (relative words such as 'now' or
 * 'yesterday' are not times), or a number of seconds since the Unix epoch,
 * which is how Sentry sends it.  Parsed without raising errors: a bad
 * timestamp is not a reason to refuse an alert.
 */
static char *
event_timestamp(JsonbContainer *obj)
{
	JsonbValue *v = get_key(obj, "timestamp");

	if (v == NULL)
		return NULL;

	if (v->type == jbvNumeric)
	{
		float8		secs;

		secs = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
												  NumericGetDatum(v->val.numeric)));
		/* between 1970 and 9999 */
		if (isnan(secs) || secs < 0 || secs > 253402300799.0)
			return NULL;
		return iso8601((TimestampTz) ((secs - ((float8) POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY) * USECS_PER_SEC));
	}

	if (v->type == jbvString && v->val.string.len > 0 &&
		v->val.string.len < MAXDATELEN)
	{
		char	   *str = pnstrdup(v->val.string.val, v->val.string.len);
		char		workbuf[MAXDATELEN + MAXDATEFIELDS];
		char	   *field[MAXDATEFIELDS];
		int			ftype[MAXDATEFIELDS];
		int			nf;
		int			dtype;
		struct pg_tm tm;
		fsec_t		fsec;
		int			tz;
		Timestamp	result;

		if (ParseDateTime(str, workbuf, sizeof(workbuf),
						  field, ftype, MAXDATEFIELDS, &nf) != 0 ||
			has_relative_word(field, ftype, nf) ||
			DecodeDateTime(field, ftype, nf, &dtype, &tm, &fsec, &tz) != 0 ||
			dtype != DTK_DATE ||
			tm2timestamp(&tm, fsec, &tz, &result) != 0 ||
			!IS_VALID_TIMESTAMP(result))
			return NULL;
		return iso8601(result);
	}
	return NULL;
}

/*
 * A stable dedup key for events that bring none: the first 128 bits of
 * SHA-256 over service, source and summary, in hex.  The same error from
 * the same place updates one incident instead of paging again.
 */
static char *
default_dedup_key(const char *service, const char *source, const char *summary)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[32];
	char	   *hex = palloc(33);
	const char *parts[3] = {service ? service : "", source, summary};

	if (pg_cryptohash_init(ctx) < 0)
		elog(ERROR, "could not initialize SHA-256: %s", pg_cryptohash_error(ctx));
	for (int i = 0; i < 3; i++)
	{
		/* the terminating zero separates the parts */
		if (pg_cryptohash_update(ctx, (const uint8 *) parts[i], strlen(parts[i]) + 1) < 0)
			elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	}
	if (pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);

	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	return hex;
}

void
pd_check_dedup_key(const char *dedup_key)
{
	if (dedup_key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("dedup key must not be null"),
				 errhint("Pass the dedup key that pagerduty_trigger() returned.")));
	if (!has_text(dedup_key))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dedup key must not be empty"),
				 errhint("Pass the dedup key that pagerduty_trigger() returned.")));
	if (pg_mbstrlen_with_len(dedup_key, strlen(dedup_key)) > PD_DEDUP_KEY_MAX_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dedup key is too long"),
				 errdetail("The dedup key has %d characters; PagerDuty accepts at most %d.",
						   pg_mbstrlen_with_len(dedup_key, strlen(dedup_key)),
						   PD_DEDUP_KEY_MAX_CHARS),
				 errhint("Use a shorter dedup key, or leave it out to get a stable hash.")));
}

static void
check_event(Jsonb *event)
{
	if (event == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event must not be null"),
				 errhint("Pass a JSON object with at least a \"summary\", \"message\" or \"title\".")));
	if (!JB_ROOT_IS_OBJECT(event) || JB_ROOT_IS_SCALAR(event))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("event must be a JSON object"),
				 errhint("Pass a JSON object with at least a \"summary\", \"message\" or \"title\".")));
}

/* Resolve the fields of a trigger (or change) event from the event. */
static void
resolve_fields(const PdEventInput *in, bool trigger, PdFields *f)
{
	static const char *const summary_keys[] = {"summary", "message", "title"};
	static const char *const source_keys[] = {"source", "transaction", "culprit"};
	static const char *const level_keys[] = {"level", "severity"};
	JsonbContainer *obj;

	check_event(in->event);
	obj = &in->event->root;

	f->summary = first_text(obj, summary_keys, lengthof(summary_keys));
	if (f->summary == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event has no summary"),
				 errdetail("None of the fields \"summary\", \"message\" and \"title\" holds any text."),
				 errhint("Give the event a \"summary\", \"message\" or \"title\".")));
	cut_chars(f->summary, PD_SUMMARY_MAX_CHARS);

	f->source = first_text(obj, source_keys, lengthof(source_keys));
	if (f->source == NULL)
		f->source = pstrdup("<unknown>");

	f->timestamp = event_timestamp(obj);
	if (f->timestamp == NULL)
		f->timestamp = iso8601(in->enqueued_at);

	f->severity = NULL;
	f->component = f->group = f->class = NULL;
	f->dedup_key = NULL;
	if (!trigger)
		return;

	/* the argument wins; else the event's level (or, for a PagerDuty-like
	 * payload that has none, its severity) */
	f->severity = pd_check_severity_argument(in->severity);
	if (f->severity == NULL)
		f->severity = pd_severity_from_level(first_text(obj, level_keys,
														lengthof(level_keys)));

	f->component = scalar_text(get_key(obj, "component"));
	f->group = scalar_text(get_key(obj, "group"));
	f->class = scalar_text(get_key(obj, "class"));

	if (in->dedup_key != NULL)
		f->dedup_key = pstrdup(in->dedup_key);
	else
	{
		static const char *const dedup_keys[] = {"dedup_key"};

		f->dedup_key = first_text(obj, dedup_keys, 1);
		if (f->dedup_key == NULL)
			f->dedup_key = default_dedup_key(in->service, f->source, f->summary);
	}
	pd_check_dedup_key(f->dedup_key);
}

/* ----------------------------------------------------------------
 *		Writing the body
 * ----------------------------------------------------------------
 */

static void
push_key(JsonbParseState **st, const char *key)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &v);
}

static void
push_string(JsonbParseState **st, JsonbIteratorToken token, const char *val)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) val;
	v.val.string.len = strlen(val);
	pushJsonbValue(st, token, &v);
}

/* key: value, when value is not NULL */
static void
push_field(JsonbParseState **st, const char *key, const char *val)
{
	if (val == NULL)
		return;
	push_key(st, key);
	push_string(st, WJB_VALUE, val);
}

static char *
cut_field(char *s, PdDetail detail)
{
	if (s != NULL && detail == PD_DETAIL_MINIMAL)
		return cut_chars(pstrdup(s), PD_SUMMARY_MAX_CHARS);
	return s;
}

/* The array under key, or NULL if there is none. */
static JsonbContainer *
get_array(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = get_key(obj, key);

	if (v == NULL || v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		return NULL;
	return v->val.binary.data;
}

/* A string item of an array, or the string field 'key' of an object item. */
static char *
item_string(JsonbValue *item, const char *key)
{
	JsonbValue *v = item;

	if (item->type == jbvBinary && JsonContainerIsObject(item->val.binary.data))
		v = get_key(item->val.binary.data, key);
	else if (key != NULL)
		return NULL;
	return (v != NULL && v->type == jbvString) ? scalar_text(v) : NULL;
}

/*
 * Start the next object of the array 'key', opening the array first if it
 * is the first one: an array with nothing in it is left out.
 */
static void
begin_item(JsonbParseState **st, const char *key, bool *started)
{
	if (!*started)
	{
		push_key(st, key);
		pushJsonbValue(st, WJB_BEGIN_ARRAY, NULL);
		*started = true;
	}
	pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
}

/*
 * "links": the event's links (URL strings, or objects with an href and an
 * optional text) and its url.  Items that are not http(s) links are left
 * out of the body (they stay in custom_details): a malformed decoration
 * must not make PagerDuty refuse the alert.
 */
static void
push_links(JsonbParseState **st, JsonbContainer *obj)
{
	JsonbContainer *links = get_array(obj, "links");
	char	   *url = scalar_text(get_key(obj, "url"));
	bool		started = false;
	uint32		n = links ? JsonContainerSize(links) : 0;

	for (uint32 i = 0; i < n; i++)
	{
		JsonbValue *item = getIthJsonbValueFromContainer(links, i);
		char	   *href = item_string(item, item->type == jbvString ? NULL : "href");

		if (!is_http_url(href))
			continue;
		begin_item(st, "links", &started);
		push_field(st, "href", href);
		push_field(st, "text", item_string(item, "text"));
		pushJsonbValue(st, WJB_END_OBJECT, NULL);
	}
	if (is_http_url(url))
	{
		begin_item(st, "links", &started);
		push_field(st, "href", url);
		pushJsonbValue(st, WJB_END_OBJECT, NULL);
	}
	if (started)
		pushJsonbValue(st, WJB_END_ARRAY, NULL);
}

/* "images": URL strings, or objects with a src and optional href, alt. */
static void
push_images(JsonbParseState **st, JsonbContainer *obj)
{
	JsonbContainer *images = get_array(obj, "images");
	bool		started = false;
	uint32		n = images ? JsonContainerSize(images) : 0;

	for (uint32 i = 0; i < n; i++)
	{
		JsonbValue *item = getIthJsonbValueFromContainer(images, i);
		char	   *src = item_string(item, item->type == jbvString ? NULL : "src");
		char	   *href = item_string(item, "href");

		if (!is_http_url(src))
			continue;
		begin_item(st, "images", &started);
		push_field(st, "src", src);
		if (is_http_url(href))
			push_field(st, "href", href);
		push_field(st, "alt", item_string(item, "alt"));
		pushJsonbValue(st, WJB_END_OBJECT, NULL);
	}
	if (started)
		pushJsonbValue(st, WJB_END_ARRAY, NULL);
}

/* "custom_details": the event itself, or a note saying why it is not. */
static void
push_details(JsonbParseState **st, Jsonb *event, PdDetail detail,
			 int full_size)
{
	push_key(st, "custom_details");
	if (detail == PD_DETAIL_FULL)
	{
		JsonbValue	v;

		v.type = jbvBinary;
		v.val.binary.data = &event->root;
		v.val.binary.len = VARSIZE(event) - VARHDRSZ;
		pushJsonbValue(st, WJB_VALUE, &v);
	}
	else
	{
		pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
		push_field(st, "note",
				   psprintf("The event was left out of custom_details: with it the request "
							"body would be %d bytes, over PagerDuty's limit of %d bytes. "
							"The whole event is kept in pagerduty_outbox.event.",
							full_size, PD_BODY_MAX_BYTES));
		pushJsonbValue(st, WJB_END_OBJECT, NULL);
	}
}

/* The "payload" object of a trigger or change event. */
static void
push_payload(JsonbParseState **st, const PdFields *f, Jsonb *event,
			 bool trigger, PdDetail detail, int full_size)
{
	push_key(st, "payload");
	pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
	push_field(st, "summary", f->summary);
	push_field(st, "source", cut_field(f->source, detail));
	push_field(st, "timestamp", f->timestamp);
	if (trigger)
	{
		push_field(st, "severity", f->severity);
		push_field(st, "component", cut_field(f->component, detail));
		push_field(st, "group", cut_field(f->group, detail));
		push_field(st, "class", cut_field(f->class, detail));
	}
	push_details(st, event, detail, full_size);
	pushJsonbValue(st, WJB_END_OBJECT, NULL);
}

static char *
body_text(JsonbValue *root, int *len)
{
	Jsonb	   *jb = JsonbValueToJsonb(root);
	StringInfoData buf;

	initStringInfo(&buf);
	JsonbToCString(&buf, &jb->root, VARSIZE(jb));
	*len = buf.len;
	return buf.data;
}

static char *
build_body(const PdEventInput *in, const PdFields *f, bool trigger,
		   PdDetail detail, int full_size, int *len)
{
	JsonbParseState *st = NULL;
	JsonbContainer *obj = &in->event->root;
	JsonbValue *root;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	if (trigger)
	{
		push_field(&st, "event_action", "trigger");
		push_field(&st, "dedup_key", f->dedup_key);
	}
	push_payload(&st, f, in->event, trigger, detail, full_size);
	if (detail != PD_DETAIL_MINIMAL)
	{
		push_links(&st, obj);
		push_images(&st, obj);
	}
	if (trigger)
	{
		if (in->client != NULL && in->client[0] != '\0')
			push_field(&st, "client", detail == PD_DETAIL_MINIMAL ?
					   cut_chars(pstrdup(in->client), PD_SUMMARY_MAX_CHARS) :
					   in->client);
		if (in->client_url != NULL && in->client_url[0] != '\0' &&
			(detail != PD_DETAIL_MINIMAL || strlen(in->client_url) <= 2048))
			push_field(&st, "client_url", in->client_url);
	}
	root = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return body_text(root, len);
}

/*
 * Build the body; if it (with the routing key it will get) would pass
 * PagerDuty's 512 KB, replace custom_details with a note, and if even that
 * is too big, also leave out links and images and cut the free-text fields
 * to 1024 characters.  The event is always sent.
 */
static void
build_event(const PdEventInput *in, bool trigger, PdPayload *out)
{
	PdFields	f;
	int			len;
	char	   *body;

	resolve_fields(in, trigger, &f);

	body = build_body(in, &f, trigger, PD_DETAIL_FULL, 0, &len);
	out->details_replaced = false;
	if (len + PD_ROUTING_KEY_ROOM > PD_BODY_MAX_BYTES)
	{
		int			full_size = len + PD_ROUTING_KEY_ROOM;

		pfree(body);
		body = build_body(in, &f, trigger, PD_DETAIL_NOTE, full_size, &len);
		if (len + PD_ROUTING_KEY_ROOM > PD_BODY_MAX_BYTES)
		{
			pfree(body);
			body = build_body(in, &f, trigger, PD_DETAIL_MINIMAL, full_size, &len);
		}
		out->details_replaced = true;
	}

	out->body = body;
	out->body_len = len;
	out->severity = f.severity;
	out->dedup_key = f.dedup_key;
}

void
pd_build_trigger(const PdEventInput *in, PdPayload *out)
{
	build_event(in, true, out);
}

void
pd_build_change(const PdEventInput *in, PdPayload *out)
{
	build_event(in, false, out);
}

void
pd_build_ack_resolve(PdAction action, const char *dedup_key, PdPayload *out)
{
	JsonbParseState *st = NULL;
	JsonbValue *root;

	Assert(action == PD_ACTION_ACKNOWLEDGE || action == PD_ACTION_RESOLVE);
	pd_check_dedup_key(dedup_key);

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_field(&st, "event_action", pd_action_name(action));
	push_field(&st, "dedup_key", dedup_key);
	root = pushJsonbValue(&st, WJB_END_OBJECT, NULL);

	out->body = body_text(root, &out->body_len);
	out->severity = NULL;
	out->dedup_key = pstrdup(dedup_key);
	out->details_replaced = false;
}

/* ----------------------------------------------------------------
 *		At send time
 * ----------------------------------------------------------------
 */

/*
 * The body to send: the stored body with the routing key in front.  The key
 * is 32 characters of [A-Za-z0-9] (checked when the service was added), so
 * it needs no escaping.
 */
char *
pd_body_with_routing_key(const char *body, int body_len,
						 const char *routing_key, int *out_len)
{
	StringInfoData buf;

	Assert(body_len >= 2 && body[0] == '{');
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"routing_key\": \"%s\"", routing_key);
	/* an empty object "{}" would need no comma; our bodies are never empty */
	if (body_len > 2)
		appendStringInfoString(&buf, ", ");
	appendBinaryStringInfo(&buf, body + 1, body_len - 1);
	*out_len = buf.len;
	return buf.data;
}

/*
 * Change events go to the sibling of the enqueue URL:
 * https://events.pagerduty.com/v2/enqueue -> .../v2/change/enqueue.
 * NULL if the URL does not end in /enqueue.
 */
char *
pd_change_events_url(const char *events_url)
{
	size_t		len = strlen(events_url);
	const char *suffix = "/enqueue";
	size_t		slen = strlen(suffix);

	while (len > 0 && events_url[len - 1] == '/')
		len--;
	if (len < slen || strncmp(events_url + len - slen, suffix, slen) != 0)
		return NULL;
	return psprintf("%.*s/change/enqueue", (int) (len - slen), events_url);
}

/* ----------------------------------------------------------------
 *		PagerDuty's answers
 * ----------------------------------------------------------------
 */

/* Walks a response body for its top-level "message" and "errors". */
typedef struct ResponseState
{
	int			depth;			/* objects entered */
	int			array_depth;	/* arrays entered */
	bool		in_errors;		/* inside the top-level "errors" array */
	char	   *field;			/* current top-level field */
	char	   *message;
	StringInfoData errors;
} ResponseState;

static void
resp_object_start(void *state)
{
	((ResponseState *) state)->depth++;
}

static void
resp_object_end(void *state)
{
	((ResponseState *) state)->depth--;
}

static void
resp_array_start(void *state)
{
	ResponseState *st = state;

	if (st->depth == 1 && st->array_depth == 0 && st->field != NULL &&
		strcmp(st->field, "errors") == 0)
		st->in_errors = true;
	st->array_depth++;
}

static void
resp_array_end(void *state)
{
	ResponseState *st = state;

	if (--st->array_depth == 0)
		st->in_errors = false;
}

static void
resp_field_start(void *state, char *fname, bool isnull)
{
	ResponseState *st = state;

	if (st->depth == 1 && st->array_depth == 0)
		st->field = fname;
}

static void
resp_scalar(void *state, char *token, JsonTokenType tokentype)
{
	ResponseState *st = state;

	if (tokentype != JSON_TOKEN_STRING || st->depth != 1)
		return;
	if (st->in_errors && st->array_depth == 1)
	{
		if (st->errors.len > 0)
			appendStringInfoString(&st->errors, "; ");
		appendStringInfoString(&st->errors, token);
	}
	else if (st->array_depth == 0 && st->field != NULL &&
			 strcmp(st->field, "message") == 0)
		st->message = token;
}

/*
 * The reason PagerDuty gave in an error response: its "message" and its
 * "errors", as in "Event object is invalid: 'payload.summary' is missing".
 * NULL if the body is not such a JSON object.  Parsed without raising
 * errors: the body comes from the network.
 */
char *
pd_response_errors(const char *body, int len)
{
	ResponseState st;
	JsonSemAction sem;
	JsonLexContext *lex;

	memset(&st, 0, sizeof(st));
	initStringInfo(&st.errors);
	memset(&sem, 0, sizeof(sem));
	sem.semstate = &st;
	sem.object_start = resp_object_start;
	sem.object_end = resp_object_end;
	sem.array_start = resp_array_start;
	sem.array_end = resp_array_end;
	sem.object_field_start = resp_field_start;
	sem.scalar = resp_scalar;

	lex = makeJsonLexContextCstringLen(pnstrdup(body, len), len, PG_UTF8, true);
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS ||
		(st.message == NULL && st.errors.len == 0))
		return NULL;
	if (st.message != NULL && st.errors.len > 0)
		return psprintf("%s: %s", st.message, st.errors.data);
	return st.message != NULL ? st.message : st.errors.data;
}
