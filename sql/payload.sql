--
-- The payload builder: every rule of DESIGN §3, through
-- pagerduty_build_payload(), which shows the exact body a trigger sends.
--
CREATE EXTENSION pagerduty;
SELECT pagerduty_add_service('database', 'R0utingKey0000000000000000000001', true);

-- A Sentry-like event: summary from message, source from culprit, severity
-- from level, its timestamp, its url as a link, the event as custom_details.
SELECT jsonb_pretty(pagerduty_build_payload($${
  "event_id": "fc6d8c0c43fc4630ad850ee518f1b9d0",
  "message": "ZeroDivisionError: division by zero",
  "level": "fatal",
  "culprit": "app.views.divide",
  "timestamp": "2026-12-04T10:00:00.5Z",
  "url": "https://sentry.example.com/organizations/acme/issues/1/",
  "tags": {"environment": "production"}
}$$));

-- summary: summary, else message, else title; empty or blank ones are skipped
SELECT pagerduty_build_payload('{"summary": "s", "message": "m", "title": "t"}')->'payload'->>'summary' AS summary,
       pagerduty_build_payload('{"message": "m", "title": "t"}')->'payload'->>'summary' AS message,
       pagerduty_build_payload('{"title": "t"}')->'payload'->>'summary' AS title,
       pagerduty_build_payload('{"summary": "  ", "message": "", "title": "t"}')->'payload'->>'summary' AS blank_skipped,
       pagerduty_build_payload('{"message": 42}')->'payload'->>'summary' AS number;

-- cut to 1024 characters, never inside a multi-byte character
SELECT length(s) AS chars, octet_length(s) AS bytes
FROM (SELECT pagerduty_build_payload(jsonb_build_object('message', repeat('x', 3000)))->'payload'->>'summary' AS s) t;
SELECT length(s) AS chars, octet_length(s) AS bytes, s = repeat('é', 1024) AS whole_characters
FROM (SELECT pagerduty_build_payload(jsonb_build_object('message', repeat('é', 1500)))->'payload'->>'summary' AS s) t;
SELECT length(s) AS chars, octet_length(s) AS bytes, right(s, 1) = '🔥' AS whole_characters
FROM (SELECT pagerduty_build_payload(jsonb_build_object('message', 'a' || repeat('🔥', 1100)))->'payload'->>'summary' AS s) t;
SELECT length(pagerduty_build_payload(jsonb_build_object('message', repeat('x', 1024)))->'payload'->>'summary') AS exactly_1024;

-- source: source, else transaction, else culprit, else '<unknown>'
SELECT pagerduty_build_payload('{"message": "m", "source": "s", "transaction": "t", "culprit": "c"}')->'payload'->>'source' AS source,
       pagerduty_build_payload('{"message": "m", "transaction": "t", "culprit": "c"}')->'payload'->>'source' AS transaction,
       pagerduty_build_payload('{"message": "m", "culprit": "c"}')->'payload'->>'source' AS culprit,
       pagerduty_build_payload('{"message": "m"}')->'payload'->>'source' AS none;

-- severity from the level, case-insensitive: Sentry's levels, PostgreSQL's
-- own, common spellings; missing or unknown levels give error
SELECT coalesce(level, '(missing)') AS level,
       pagerduty_build_payload(jsonb_strip_nulls(jsonb_build_object('message', 'm', 'level', level)))->'payload'->>'severity' AS severity
FROM unnest(ARRAY['debug', 'DEBUG1', 'debug5', 'info', 'INFO', 'log', 'notice', 'NOTICE',
                  'warning', 'WARN', 'error', 'ERROR', 'fatal', 'FATAL', 'panic', 'PANIC',
                  'critical', 'emerg', 'verbose', NULL]) AS level;
-- a PagerDuty-like payload keeps its severity when it has no level
SELECT pagerduty_build_payload('{"summary": "s", "severity": "warning"}')->'payload'->>'severity' AS pd_like,
       pagerduty_build_payload('{"summary": "s", "severity": "info", "level": "fatal"}')->'payload'->>'severity' AS level_wins;
-- the argument wins over the level; 'default' and NULL mean "from the level"
SELECT pagerduty_build_payload('{"message": "m", "level": "debug"}', 'critical')->'payload'->>'severity' AS argument,
       pagerduty_build_payload('{"message": "m", "level": "debug"}', 'WARNING')->'payload'->>'severity' AS case_insensitive,
       pagerduty_build_payload('{"message": "m", "level": "debug"}', 'default')->'payload'->>'severity' AS "default",
       pagerduty_build_payload('{"message": "m", "level": "debug"}', NULL)->'payload'->>'severity' AS "null";

-- timestamp: a valid time is kept (in UTC, ISO 8601), else the enqueue time
SET TimeZone = 'Europe/Paris';
SELECT ts AS given,
       pagerduty_build_payload(jsonb_build_object('message', 'm', 'timestamp', ts))->'payload'->>'timestamp' AS sent
FROM (VALUES ('"2026-12-04T10:00:00Z"'::jsonb), ('"2026-12-04T10:00:00.123+02:00"'),
             ('"2026-12-04 10:00:00"'), ('"Fri, 04 Dec 2026 10:00:00 GMT"'),
             ('1796378400'), ('1796378400.25')) AS t(ts);
SELECT ts AS given,
       (pagerduty_build_payload(jsonb_build_object('message', 'm', 'timestamp', ts))->'payload'->>'timestamp')::timestamptz = now() AS enqueue_time
FROM (VALUES ('"yesterday"'::jsonb), ('"now"'), ('"today"'), ('"tomorrow 10:00"'), ('"epoch"'), ('"infinity"'), ('"not a time"'), ('"2026-13-45T10:00:00Z"'),
             ('-5'), ('true'), ('{"a": 1}'), ('null'), ('"99999-01-01T00:00:00Z"')) AS t(ts);
SELECT (pagerduty_build_payload('{"message": "m"}')->'payload'->>'timestamp')::timestamptz = now() AS no_timestamp;
RESET TimeZone;

-- component, group and class when present
SELECT (pagerduty_build_payload('{"message": "m", "component": "postgres", "group": "prod-db", "class": "disk"}')->'payload') - 'timestamp' - 'custom_details' AS with_them,
       pagerduty_build_payload('{"message": "m", "component": null}')->'payload' ? 'component' AS null_is_absent;

-- custom_details is the whole event
SELECT pagerduty_build_payload(e)->'payload'->'custom_details' = e AS details_are_the_event
FROM (VALUES ('{"message": "m", "nested": {"a": [1, 2, {"b": null}]}, "n": 1.5, "ok": true}'::jsonb)) AS t(e);

-- links: strings and {href, text} objects from "links", then the "url";
-- anything that is not an http(s) link is left out of links (it stays in
-- custom_details); images likewise
SELECT jsonb_pretty(pagerduty_build_payload($${
  "message": "m",
  "links": ["https://a.example/1", {"href": "https://b.example/2", "text": "B"},
            {"text": "no href"}, "ftp://c.example/3", 42, {"href": "javascript:alert(1)"}],
  "url": "http://d.example/4",
  "images": ["https://i.example/1.png", {"src": "https://i.example/2.png", "href": "https://i.example", "alt": "chart"},
             {"alt": "no src"}, {"src": "https://i.example/3.png", "href": "mailto:x"}]
}$$) - 'payload');
SELECT pagerduty_build_payload('{"message": "m", "links": "https://not-an-array.example"}') ? 'links' AS links_not_array,
       pagerduty_build_payload('{"message": "m"}') ? 'images' AS no_images;

-- client and client_url come from the settings
SHOW pagerduty.client;
SHOW pagerduty.client_url;
SELECT pagerduty_build_payload('{"message": "m"}') ? 'client_url' AS client_url_when_empty;
SET pagerduty.client = 'billing-db';
SET pagerduty.client_url = 'https://grafana.example.com/d/billing';
SELECT p->'client' AS client, p->'client_url' AS client_url
FROM (SELECT pagerduty_build_payload('{"message": "m"}') AS p) t;
SET pagerduty.client = '';
SELECT pagerduty_build_payload('{"message": "m"}') ? 'client' AS client_when_empty;
RESET pagerduty.client;
RESET pagerduty.client_url;

-- dedup_key: the argument, else the event's, else a stable hash of service,
-- source and summary (the same error updates one incident)
SELECT pagerduty_build_payload('{"message": "m", "dedup_key": "from-event"}', NULL, 'from-argument')->>'dedup_key' AS argument,
       pagerduty_build_payload('{"message": "m", "dedup_key": "from-event"}')->>'dedup_key' AS event,
       pagerduty_build_payload('{"message": "m", "culprit": "c"}')->>'dedup_key' AS hash,
       pagerduty_build_payload('{"message": "m", "culprit": "c", "extra": 1}')->>'dedup_key' =
       pagerduty_build_payload('{"message": "m", "culprit": "c"}')->>'dedup_key' AS same_error_same_key,
       pagerduty_build_payload('{"message": "m", "culprit": "other"}')->>'dedup_key' <>
       pagerduty_build_payload('{"message": "m", "culprit": "c"}')->>'dedup_key' AS other_source_other_key;
SELECT length(pagerduty_build_payload('{"message": "m"}', NULL, repeat('k', 255))->>'dedup_key') AS dedup_key_of_255;

-- the 512 KB rule: custom_details is replaced by a note, the event still goes
SELECT octet_length(p::text) < 512 * 1024 AS under_512kb,
       p->'payload'->>'summary' AS summary,
       p->'payload'->'custom_details'->>'note' AS note
FROM (SELECT pagerduty_build_payload(jsonb_build_object('message', 'huge', 'blob', repeat('x', 600 * 1024))) AS p) t;
SELECT octet_length(p::text) > 400 * 1024 AS kept_whole,
       p->'payload'->'custom_details' ? 'blob' AS details_kept
FROM (SELECT pagerduty_build_payload(jsonb_build_object('message', 'big', 'blob', repeat('x', 500 * 1024))) AS p) t;
-- too big even without the details: links left out, long fields cut
SELECT octet_length(p::text) < 512 * 1024 AS under_512kb,
       length(p->'payload'->>'source') AS source_chars,
       p ? 'links' AS links
FROM (SELECT pagerduty_build_payload(jsonb_build_object('message', 'huge', 'source', repeat('s', 600 * 1024),
                                                        'url', 'https://x.example/' || repeat('u', 600 * 1024))) AS p) t;
-- and it is enqueued
SELECT length(pagerduty_trigger(jsonb_build_object('message', 'huge', 'blob', repeat('x', 600 * 1024)))) AS enqueued;
SELECT octet_length(payload::text) < 512 * 1024 AS stored_under_512kb, octet_length(event::text) > 600 * 1024 AS event_kept
FROM pagerduty_outbox ORDER BY id DESC LIMIT 1;

-- the preview is exactly what is stored, and so sent (in one transaction:
-- both use the transaction's time when the event has none)
BEGIN;
SELECT pagerduty_trigger('{"message": "same body", "level": "warning", "culprit": "x"}') AS dedup_key;
SELECT payload::jsonb = pagerduty_build_payload('{"message": "same body", "level": "warning", "culprit": "x"}') AS preview_is_body
FROM pagerduty_outbox ORDER BY id DESC LIMIT 1;
COMMIT;
