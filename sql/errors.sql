--
-- Bad input: a clear error with an SQLSTATE (printed after each), a hint
-- where it helps, and nothing left behind.
--
SELECT count(*) AS outbox_before FROM pagerduty_outbox \gset
SELECT count(*) AS services_before FROM pagerduty_services \gset

-- the event
SELECT pagerduty_trigger(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_trigger('"disk full"');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_trigger('["disk full"]');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_trigger('{}');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_trigger('{"summary": "", "message": " ", "title": null, "level": "error"}');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_trigger('{"message": {"formatted": "an object is not text"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_change('{"source": "ci"}');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_build_payload('[]');
\echo :LAST_ERROR_SQLSTATE

-- the severity
SELECT pagerduty_trigger('{"message": "m"}', 'urgent');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_trigger('{"message": "m"}', '');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_build_payload('{"message": "m"}', 'high');
\echo :LAST_ERROR_SQLSTATE

-- the service
SELECT pagerduty_trigger('{"message": "m"}', NULL, 'no-such-service');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_resolve('k', 'no-such-service');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_change('{"summary": "deployed"}', 'no-such-service');
\echo :LAST_ERROR_SQLSTATE
BEGIN;
UPDATE pagerduty_services SET is_default = false;
SELECT pagerduty_trigger('{"message": "m"}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
UPDATE pagerduty_services SET is_default = false;
SELECT pagerduty_acknowledge('k');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- the dedup key
SELECT pagerduty_trigger('{"message": "m"}', NULL, NULL, repeat('k', 256));
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_trigger(jsonb_build_object('message', 'm', 'dedup_key', repeat('é', 256)));
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_trigger('{"message": "m"}', NULL, NULL, '');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_acknowledge(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_resolve(NULL, 'billing');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_resolve('');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_acknowledge(repeat('k', 300));
\echo :LAST_ERROR_SQLSTATE

-- services: the routing key (never shown), the single default, the URL
SELECT pagerduty_add_service('short-key', 'abc123');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_add_service('dashed-key', 'R0utingKey00000000000000000000-1');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_add_service('long-key', 'R0utingKey0000000000000000000000000000001');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_add_service('accented-key', 'R0utingKey00000000000000000000é');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_add_service('null-key', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_add_service(NULL, 'R0utingKey0000000000000000000009');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_add_service('', 'R0utingKey0000000000000000000009');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_add_service('second-default', 'R0utingKey0000000000000000000009', true);
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_add_service('bad-url', 'R0utingKey0000000000000000000009', false, 'file:///etc/passwd');
\echo :LAST_ERROR_SQLSTATE
-- the guard covers direct writes too
INSERT INTO pagerduty_services (name, routing_key) VALUES ('direct', 'not-a-key');
\echo :LAST_ERROR_SQLSTATE
UPDATE pagerduty_services SET routing_key = 'short' WHERE name = 'billing';
\echo :LAST_ERROR_SQLSTATE
UPDATE pagerduty_services SET is_default = true WHERE name = 'billing';
\echo :LAST_ERROR_SQLSTATE

-- settings
SET pagerduty.client_url = 'not a url';
\echo :LAST_ERROR_SQLSTATE
SET pagerduty.events_url = 'ftp://events.example.com/v2/enqueue';
\echo :LAST_ERROR_SQLSTATE
SET pagerduty.no_such_setting = 1;
\echo :LAST_ERROR_SQLSTATE

-- pagerduty_wait
SELECT pagerduty_wait('-1 s');
\echo :LAST_ERROR_SQLSTATE
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pagerduty_wait('1 s');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- nothing was left behind
SELECT count(*) - :outbox_before AS new_outbox_rows FROM pagerduty_outbox;
SELECT count(*) - :services_before AS new_services FROM pagerduty_services;
SELECT name, right(routing_key, 4) AS key_end, is_default FROM pagerduty_services ORDER BY name;
