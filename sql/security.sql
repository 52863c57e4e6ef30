--
-- Privileges (DESIGN §6): PUBLIC gets nothing; a role granted EXECUTE on the
-- enqueue functions alerts without any right on the tables and cannot read
-- a routing key; only superusers choose where events go.
--
CREATE ROLE pd_app LOGIN;
CREATE ROLE pd_nobody LOGIN;
CREATE ROLE pd_admin LOGIN;
GRANT EXECUTE ON FUNCTION pagerduty_trigger(jsonb, text, text, text),
                          pagerduty_resolve(text, text)
    TO pd_app;
GRANT SELECT ON pagerduty_status TO pd_admin;
GRANT SELECT, INSERT, UPDATE ON pagerduty_services TO pd_admin;
GRANT EXECUTE ON FUNCTION pagerduty_add_service(text, text, boolean, text) TO pd_admin;

-- PUBLIC has no privilege on any object of the extension
SELECT count(*) AS public_function_grants
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pagerduty'
WHERE has_function_privilege('public', p.oid, 'EXECUTE');
SELECT c.relname, has_table_privilege('public', c.oid, 'SELECT') AS public_select
FROM pg_class c JOIN pg_depend d ON d.objid = c.oid AND d.classid = 'pg_class'::regclass
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pagerduty'
WHERE c.relkind IN ('r', 'v') ORDER BY 1;
-- SECURITY DEFINER functions all fix their search_path
SELECT p.proname, p.prosecdef, p.proconfig
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pagerduty'
ORDER BY 1;

SELECT count(*) AS outbox_before FROM pagerduty_outbox \gset

-- a role with only EXECUTE enqueues
SET ROLE pd_app;
SELECT length(pagerduty_trigger('{"message": "from the app", "level": "error"}')) > 0 AS enqueued;
SELECT pagerduty_resolve('payments-1', 'billing') > 0 AS enqueued;
-- ... but reads no table, no routing key, no status
SELECT routing_key FROM pagerduty_services;
SELECT count(*) FROM pagerduty_outbox;
SELECT * FROM pagerduty_status;
-- ... and has no other function
SELECT pagerduty_acknowledge('payments-1');
SELECT pagerduty_add_service('mine', 'R0utingKey000000000000000000000m');
SELECT pagerduty_retry();
-- ... nor can it send events elsewhere
SET pagerduty.events_url = 'http://attacker.example/v2/enqueue';
SET pagerduty.proxy = 'http://attacker.example:3128';
SET pagerduty.ca_file = '/tmp/attacker.pem';
-- the client name is the caller's to set
SET pagerduty.client = 'payments-api';
SHOW pagerduty.client;
RESET pagerduty.client;
RESET ROLE;
SELECT count(*) - :outbox_before AS enqueued_by_pd_app FROM pagerduty_outbox;

-- a role with no grant can do nothing
SET ROLE pd_nobody;
SELECT pagerduty_trigger('{"message": "m"}');
SELECT pagerduty_build_payload('{"message": "m"}');
SELECT pagerduty_wait('0');
RESET ROLE;

-- an administrator who is not a superuser manages services, sees the
-- status, but may not change where events go
SET ROLE pd_admin;
SELECT pagerduty_add_service('ops', 'R0utingKey00000000000000000000op');
SELECT pagerduty_add_service('ops-eu', 'R0utingKey00000000000000000000eu', false,
                             'https://events.eu.pagerduty.com/v2/enqueue');
UPDATE pagerduty_services SET events_url = 'http://attacker.example/v2/enqueue' WHERE name = 'billing';
SELECT service, status, events FROM pagerduty_status ORDER BY 1, 2;
RESET ROLE;
-- a superuser may
SELECT pagerduty_add_service('ops-eu', 'R0utingKey00000000000000000000eu', false,
                             'https://events.eu.pagerduty.com/v2/enqueue');
SELECT name, events_url FROM pagerduty_services WHERE events_url IS NOT NULL ORDER BY 1;

-- no routing key in any view or any column a non-owner can be granted
SELECT count(*) AS keys_in_outbox FROM pagerduty_outbox o, pagerduty_services s
WHERE o.payload::text LIKE '%' || s.routing_key || '%' OR o.event::text LIKE '%' || s.routing_key || '%';

-- pagerduty_alert() reads the row with the inserting role's rights: a cast
-- of a column type (run by to_jsonb) is the table owner's code and runs as
-- the inserting role, never as the extension's owner
CREATE ROLE pd_tricky LOGIN;
GRANT CREATE ON SCHEMA public TO pd_tricky;
GRANT EXECUTE ON FUNCTION pagerduty_alert() TO pd_tricky;
SET ROLE pd_tricky;
CREATE TYPE mood AS ENUM ('sad');
CREATE FUNCTION mood_to_json(mood) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'the cast runs as %', current_user;
    RETURN to_json($1::text);
END $$;
CREATE CAST (mood AS json) WITH FUNCTION mood_to_json(mood);
CREATE TABLE tricky_errors (message text, feeling mood);
CREATE TRIGGER tricky_page AFTER INSERT ON tricky_errors
    FOR EACH ROW EXECUTE FUNCTION pagerduty_alert('billing');
INSERT INTO tricky_errors VALUES ('m', 'sad');
RESET ROLE;
SELECT event FROM pagerduty_outbox ORDER BY id DESC LIMIT 1;
DROP OWNED BY pd_tricky CASCADE;
DROP ROLE pd_tricky;

-- DROP EXTENSION takes everything with it
DROP EXTENSION pagerduty;
SELECT count(*) AS objects_left FROM pg_class WHERE relname LIKE 'pagerduty%';
SELECT count(*) AS functions_left FROM pg_proc WHERE proname LIKE 'pagerduty%';
DROP ROLE pd_app, pd_nobody, pd_admin;
