--
-- Where users call it from: pagerduty_alert() on error-log tables, and
-- pagerduty_check() for scheduled checks.  What they enqueue; delivery is
-- tested by test/t/020_integrations.pl.
--
CREATE EXTENSION pagerduty;
SELECT pagerduty_add_service('database', 'R0utingKey0000000000000000000001', true);
SELECT pagerduty_add_service('billing', 'B1llingKey000000000000000000000b');

-- an application's error log
CREATE TABLE app_errors (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    level       text NOT NULL,
    message     text,
    culprit     text,
    url         text,
    dedup_key   text,
    extra       jsonb
);

-- the alert rule: error and fatal rows page, severity from the level
CREATE TRIGGER app_errors_page
    AFTER INSERT ON app_errors
    FOR EACH ROW WHEN (NEW.level IN ('error', 'fatal'))
    EXECUTE FUNCTION pagerduty_alert('database', 'default');

INSERT INTO app_errors (level, message, culprit, url, extra) VALUES
    ('info', 'user logged in', 'auth.login', NULL, NULL),
    ('error', 'payment declined: card expired', 'billing.charge', 'https://app.example/errors/2', '{"order": 42}'),
    ('fatal', 'cannot write to disk', 'storage.flush', NULL, NULL),
    ('warning', 'slow query', 'reports.run', NULL, NULL);
SELECT service, severity, event->>'message' AS message,
       payload::jsonb->'payload'->>'summary' AS summary,
       payload::jsonb->'payload'->>'source' AS source,
       payload::jsonb->'links' AS links
FROM pagerduty_outbox ORDER BY id;
-- the event is the whole row, as jsonb
SELECT event - 'created_at' AS event FROM pagerduty_outbox ORDER BY id LIMIT 1;
-- the row's dedup_key column is the incident's key
INSERT INTO app_errors (level, message, dedup_key) VALUES ('error', 'again', 'billing-declines');
SELECT dedup_key FROM pagerduty_outbox ORDER BY id DESC LIMIT 1;
-- a rolled-back insert pages nobody
BEGIN;
INSERT INTO app_errors (level, message) VALUES ('fatal', 'rolled back');
ROLLBACK;
SELECT count(*) AS pages FROM pagerduty_outbox;

-- fan-out: one row, one event per service; a fixed severity (the first
-- trigger pages the database service for this fatal row too)
TRUNCATE pagerduty_outbox;
CREATE TRIGGER app_errors_fanout
    AFTER INSERT ON app_errors
    FOR EACH ROW WHEN (NEW.level = 'fatal')
    EXECUTE FUNCTION pagerduty_alert('database', 'billing', 'critical');
INSERT INTO app_errors (level, message) VALUES ('fatal', 'everything is on fire');
SELECT service, severity, count(*) FROM pagerduty_outbox GROUP BY 1, 2 ORDER BY 1, 2;
DROP TRIGGER app_errors_fanout ON app_errors;

-- no arguments: the default service, severity from the level; UPDATE and
-- BEFORE triggers work too
TRUNCATE pagerduty_outbox;
CREATE TABLE job_failures (job text, title text, level text);
CREATE TRIGGER job_failures_page BEFORE INSERT OR UPDATE ON job_failures
    FOR EACH ROW EXECUTE FUNCTION pagerduty_alert();
INSERT INTO job_failures VALUES ('nightly-backup', 'backup failed', 'ERROR') RETURNING *;
UPDATE job_failures SET level = 'warning', title = 'backup late';
SELECT service, severity, payload::jsonb->'payload'->>'summary' AS summary FROM pagerduty_outbox ORDER BY id;

-- a role that may only insert into the error log still pages
TRUNCATE pagerduty_outbox;
CREATE ROLE pd_logger;
GRANT INSERT ON app_errors TO pd_logger;
GRANT USAGE ON SEQUENCE app_errors_id_seq TO pd_logger;
SET ROLE pd_logger;
INSERT INTO app_errors (level, message) VALUES ('error', 'from a role with no right on the extension');
SELECT count(*) FROM pagerduty_outbox;  -- it cannot even see the outbox
RESET ROLE;
SELECT service, event->>'message' AS message FROM pagerduty_outbox;
DROP OWNED BY pd_logger;
DROP ROLE pd_logger;

-- refused when the trigger is created
CREATE TABLE no_message (level text, body text);
CREATE TRIGGER t AFTER INSERT ON no_message FOR EACH ROW EXECUTE FUNCTION pagerduty_alert();
\echo :LAST_ERROR_SQLSTATE
CREATE TRIGGER t AFTER DELETE ON app_errors FOR EACH ROW EXECUTE FUNCTION pagerduty_alert();
\echo :LAST_ERROR_SQLSTATE
CREATE TRIGGER t AFTER INSERT ON app_errors FOR EACH STATEMENT EXECUTE FUNCTION pagerduty_alert();
\echo :LAST_ERROR_SQLSTATE
CREATE TRIGGER t AFTER INSERT ON app_errors FOR EACH ROW EXECUTE FUNCTION pagerduty_alert('no-such-service');
\echo :LAST_ERROR_SQLSTATE
CREATE TRIGGER t AFTER INSERT ON app_errors FOR EACH ROW EXECUTE FUNCTION pagerduty_alert('database', 'urgent');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_alert();
\echo :LAST_ERROR_SQLSTATE
-- a row whose message is null cannot page: the insert fails, and says why
INSERT INTO app_errors (level, message) VALUES ('error', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgname = 't';

-- pagerduty_check(): (false, true, true, false, false) gives one trigger and
-- one resolve, with the same dedup key
TRUNCATE pagerduty_outbox;
SELECT pagerduty_check('replication_lag', false) AS call_1;
SELECT pagerduty_check('replication_lag', true,
                       '{"summary": "replica lag is 420 s", "source": "db-2"}', 'critical') AS call_2;
SELECT pagerduty_check('replication_lag', true) AS call_3;
SELECT pagerduty_check('replication_lag', false) AS call_4;
SELECT pagerduty_check('replication_lag', false) AS call_5;
SELECT event_action, severity, service,
       regexp_replace(dedup_key, ':[0-9a-f]{8}:', ':<cluster>:') AS dedup_key,
       payload::jsonb->'payload'->>'summary' AS summary
FROM pagerduty_outbox ORDER BY id;
SELECT count(DISTINCT dedup_key) AS one_incident FROM pagerduty_outbox;
SELECT name, failing, service, regexp_replace(dedup_key, ':[0-9a-f]{8}:', ':<cluster>:') AS dedup_key
FROM pagerduty_checks;
-- failing again later: a new trigger on the same key; without an event, a
-- summary that names the check
SELECT pagerduty_check('replication_lag', true) AS again;
SELECT payload::jsonb->'payload'->>'summary' AS summary FROM pagerduty_outbox ORDER BY id DESC LIMIT 1;
-- the resolve goes to the service that was paged, whatever is passed now
TRUNCATE pagerduty_outbox;
SELECT pagerduty_check('billing_errors', true, '{}', NULL, 'billing');
SELECT pagerduty_check('billing_errors', false, '{}', NULL, 'database');
SELECT event_action, service FROM pagerduty_outbox ORDER BY id;
-- bad input
SELECT pagerduty_check('lag', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_check('', true);
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_check(repeat('x', 201), true);
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_check('lag', true, '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_check('lag', true, '{}', 'urgent');
\echo :LAST_ERROR_SQLSTATE
SELECT pagerduty_check('lag', true, '{}', NULL, 'nope');
\echo :LAST_ERROR_SQLSTATE
SELECT name, failing FROM pagerduty_checks ORDER BY name;

DROP TABLE app_errors, job_failures, no_message;
DROP EXTENSION pagerduty;
