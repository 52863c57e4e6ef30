--
-- Enqueueing: one outbox row per event, in the caller's transaction.
-- No worker serves this database (pagerduty.database is another one), so
-- the rows stay exactly as the SQL functions wrote them.
--
TRUNCATE pagerduty_outbox;

-- services: upsert, one default, the key is never shown
SELECT pagerduty_add_service('billing', 'B1llingKey000000000000000000000b');
SELECT pagerduty_add_service('billing', 'B1llingKey000000000000000000000c', false,
                             'https://events.eu.pagerduty.com/v2/enqueue');
SELECT name, is_default, events_url, right(routing_key, 4) AS key_end FROM pagerduty_services ORDER BY name;

-- trigger: returns the dedup key; the row holds the event, the resolved
-- severity and service, and the body without the routing key
BEGIN;
SELECT pagerduty_trigger('{"message": "replica lag 42 s", "level": "warning", "source": "db-2"}') AS dedup_key;
SELECT pagerduty_trigger('{"message": "payments failing"}', 'critical', 'billing', 'payments-1') AS dedup_key;
SELECT service, event_action, dedup_key, severity, event, status, attempts, http_status, last_error,
       delivered_at, claimed_at, finished_at,
       enqueued_at = now() AS enqueued_now, next_attempt_at = now() AS due_now,
       payload::jsonb ? 'routing_key' AS key_in_payload
FROM pagerduty_outbox ORDER BY id;
COMMIT;

-- acknowledge and resolve: the dedup key, to the default or a named service
SELECT pagerduty_acknowledge('payments-1', 'billing') > 0 AS acknowledged;
SELECT pagerduty_resolve('payments-1', 'billing') > 0 AS resolved;
SELECT pagerduty_resolve('4f1c0a3c9d2e4b5a8e7f6a5b4c3d2e1f') > 0 AS resolved_default;
SELECT service, event_action, dedup_key, severity, event, payload
FROM pagerduty_outbox WHERE event_action IN ('acknowledge', 'resolve') ORDER BY id;

-- change events: their own body shape, no dedup key, no severity
SELECT pagerduty_change('{"summary": "deployed v1.4.2", "source": "ci", "url": "https://ci.example/builds/220"}') > 0 AS changed;
SELECT service, event_action, dedup_key, severity, payload::jsonb #- '{payload,timestamp}' AS payload
FROM pagerduty_outbox WHERE event_action = 'change';

-- a rolled-back transaction leaves no row
SELECT count(*) AS before FROM pagerduty_outbox;
BEGIN;
SELECT length(pagerduty_trigger('{"message": "never sent"}')) > 0 AS enqueued;
SELECT pagerduty_resolve('payments-1', 'billing') > 0 AS enqueued;
ROLLBACK;
SELECT count(*) AS after FROM pagerduty_outbox;
-- nor does a rolled-back savepoint
BEGIN;
SAVEPOINT s;
SELECT length(pagerduty_trigger('{"message": "never sent either"}')) > 0 AS enqueued;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT count(*) AS after_savepoint FROM pagerduty_outbox;

-- the status view: per service and status, no routing key anywhere
SELECT service, status, events, oldest_pending_age >= '0'::interval AS has_age, last_error
FROM pagerduty_status ORDER BY service, status;
SELECT count(*) AS key_in_status
FROM pagerduty_status s, pagerduty_services v
WHERE row_to_json(s)::text LIKE '%' || v.routing_key || '%';

-- pagerduty_wait: nobody delivers here, so it times out
SELECT pagerduty_wait('50 ms') AS all_sent;
SELECT pagerduty_wait('0') AS all_sent;
-- ... and it refuses to wait for its own transaction's events
BEGIN;
SELECT length(pagerduty_trigger('{"message": "mine"}')) > 0 AS enqueued;
SELECT pagerduty_wait('1s');
ROLLBACK;

-- pagerduty_retry: failed events back to pending, with fresh attempts
UPDATE pagerduty_outbox SET status = 'failed', attempts = 10, last_error = 'HTTP 500: boom', finished_at = now()
WHERE dedup_key = 'payments-1' AND event_action = 'trigger';
SELECT pagerduty_retry(-1) AS none_with_that_id;
BEGIN;
SELECT pagerduty_retry(id) AS retried FROM pagerduty_outbox WHERE dedup_key = 'payments-1' AND event_action = 'trigger';
SELECT status, attempts, next_attempt_at = now() AS due_now, finished_at FROM pagerduty_outbox
WHERE dedup_key = 'payments-1' AND event_action = 'trigger';
COMMIT;
SELECT pagerduty_retry() AS nothing_failed;
-- a failed event is not put back once a later event of its queue was
-- delivered: an old trigger after its resolve would reopen the incident
UPDATE pagerduty_outbox SET status = 'failed' WHERE dedup_key = 'payments-1' AND event_action = 'trigger';
UPDATE pagerduty_outbox SET status = 'delivered' WHERE dedup_key = 'payments-1' AND event_action = 'resolve';
SELECT pagerduty_retry() AS retried;
SELECT event_action, status FROM pagerduty_outbox WHERE dedup_key = 'payments-1' ORDER BY id;

-- the table constraints back the functions up
\set VERBOSITY terse
INSERT INTO pagerduty_outbox (service, event_action, payload) VALUES ('database', 'explode', '{}');
INSERT INTO pagerduty_outbox (service, event_action, payload, status) VALUES ('database', 'trigger', '{}', 'lost');
\set VERBOSITY default
