/* pagerduty--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pagerduty" to load this file. \quit

-------------------------------------------------------------------------------
-- Services: the PagerDuty services (Events API v2 integrations) events go to.
-------------------------------------------------------------------------------

CREATE TABLE pagerduty_services (
    name        text PRIMARY KEY,
    routing_key text NOT NULL,      -- a secret: never shown by a view or a message
    events_url  text,               -- null: pagerduty.events_url
    is_default  boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- at most one default service
CREATE UNIQUE INDEX pagerduty_services_one_default
    ON pagerduty_services (is_default) WHERE is_default;

COMMENT ON TABLE pagerduty_services IS
    'PagerDuty services (Events API v2 integrations) that events go to';

CREATE FUNCTION pagerduty_services_guard() RETURNS trigger
    LANGUAGE C
    SET search_path = @extschema@, pg_temp
    AS 'MODULE_PATHNAME', 'pagerduty_services_guard';

-- checks every write, not only pagerduty_add_service(): routing key format,
-- one default, and only superusers may set where events go
CREATE TRIGGER pagerduty_services_guard
    BEFORE INSERT OR UPDATE ON pagerduty_services
    FOR EACH ROW EXECUTE FUNCTION pagerduty_services_guard();

-------------------------------------------------------------------------------
-- The outbox: one row per enqueued event, written in the caller's transaction.
-------------------------------------------------------------------------------

CREATE TABLE pagerduty_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    service         text NOT NULL,
    event_action    text NOT NULL
                    CHECK (event_action IN ('trigger', 'acknowledge', 'resolve', 'change')),
    dedup_key       text,           -- null only for change events
    severity        text,           -- trigger events only
    event           jsonb,          -- the event as given (trigger, change)
    payload         json NOT NULL,  -- the exact body sent, routing_key left out
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    http_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    claimed_at      timestamptz,    -- set while an attempt is in flight
    finished_at     timestamptz     -- when it became delivered or failed
);

COMMENT ON TABLE pagerduty_outbox IS
    'PagerDuty events: pending until the worker delivers them or gives up';

-- due events, for the worker's claim and pagerduty_wait()
CREATE INDEX pagerduty_outbox_due
    ON pagerduty_outbox (next_attempt_at, id) WHERE status = 'pending';
-- the queue of each service and dedup key, to keep their order
CREATE INDEX pagerduty_outbox_queue
    ON pagerduty_outbox (service, dedup_key, id) WHERE status = 'pending';
-- finished events, for retention
CREATE INDEX pagerduty_outbox_finished
    ON pagerduty_outbox (finished_at) WHERE status <> 'pending';

-------------------------------------------------------------------------------
-- Scheduled checks: the state behind pagerduty_check().
-------------------------------------------------------------------------------

CREATE TABLE pagerduty_checks (
    name        text PRIMARY KEY,
    failing     boolean NOT NULL DEFAULT false,
    service     text,               -- where the open incident was sent
    dedup_key   text,               -- the open (or last) incident
    changed_at  timestamptz NOT NULL DEFAULT now(),
    checked_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE pagerduty_checks IS
    'State of the checks run with pagerduty_check(): failing or not';

-- services, check states and pending events survive pg_dump
SELECT pg_catalog.pg_extension_config_dump('pagerduty_services', '');
SELECT pg_catalog.pg_extension_config_dump('pagerduty_checks', '');
SELECT pg_catalog.pg_extension_config_dump('pagerduty_outbox', $$WHERE status = 'pending'$$);
SELECT pg_catalog.pg_extension_config_dump('pagerduty_outbox_id_seq', '');

-------------------------------------------------------------------------------
-- Status: per service and status.  Shows no routing key.
-------------------------------------------------------------------------------

CREATE VIEW pagerduty_status AS
SELECT service,
       status,
       count(*) AS events,
       now() - min(enqueued_at) FILTER (WHERE status = 'pending') AS oldest_pending_age,
       max(last_attempt_at) AS last_attempt_at,
       (pg_catalog.array_agg(last_error ORDER BY coalesce(last_attempt_at, enqueued_at) DESC)
            FILTER (WHERE last_error IS NOT NULL))[1] AS last_error
FROM pagerduty_outbox
GROUP BY service, status;

COMMENT ON VIEW pagerduty_status IS
    'Events per service and status, the age of the oldest pending one and the last error';

-------------------------------------------------------------------------------
-- Functions
--
-- The enqueue functions are SECURITY DEFINER with a fixed search_path, so a
-- role that is granted EXECUTE can alert without any right on the tables.
-- Built-in functions they call by name are qualified with pg_catalog, so
-- that no overload created in the extension's schema can stand in for them.
-------------------------------------------------------------------------------

CREATE FUNCTION pagerduty_add_service(name text, routing_key text,
                                      is_default boolean DEFAULT false,
                                      events_url text DEFAULT NULL)
RETURNS void
LANGUAGE C
SET search_path = @extschema@, pg_temp
AS 'MODULE_PATHNAME', 'pagerduty_add_service';

COMMENT ON FUNCTION pagerduty_add_service(text, text, boolean, text) IS
    'add or replace a PagerDuty service (runs with the caller''s rights)';

CREATE FUNCTION pagerduty_trigger(event jsonb,
                                  severity text DEFAULT NULL,
                                  service text DEFAULT NULL,
                                  dedup_key text DEFAULT NULL)
RETURNS text
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = @extschema@, pg_temp
AS 'MODULE_PATHNAME', 'pagerduty_trigger';

COMMENT ON FUNCTION pagerduty_trigger(jsonb, text, text, text) IS
    'enqueue a trigger event, sent after commit; returns its dedup key';

CREATE FUNCTION pagerduty_acknowledge(dedup_key text, service text DEFAULT NULL)
RETURNS bigint
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = @extschema@, pg_temp
AS 'MODULE_PATHNAME', 'pagerduty_acknowledge';

COMMENT ON FUNCTION pagerduty_acknowledge(text, text) IS
    'enqueue an acknowledge event; returns its outbox id';

CREATE FUNCTION pagerduty_resolve(dedup_key text, service text DEFAULT NULL)
RETURNS bigint
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = @extschema@, pg_temp
AS 'MODULE_PATHNAME', 'pagerduty_resolve';

COMMENT ON FUNCTION pagerduty_resolve(text, text) IS
    'enqueue a resolve event; returns its outbox id';

CREATE FUNCTION pagerduty_change(event jsonb, service text DEFAULT NULL)
RETURNS bigint
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = @extschema@, pg_temp
AS 'MODULE_PATHNAME', 'pagerduty_change';

COMMENT ON FUNCTION pagerduty_change(jsonb, text) IS
    'enqueue a change event (/v2/change/enqueue); returns its outbox id';

CREATE FUNCTION pagerduty_build_payload(event jsonb,
                                        severity text DEFAULT NULL,
                                        dedup_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE C STABLE SECURITY DEFINER
SET search_path = @extschema@, pg_temp
AS 'MODULE_PATHNAME', 'pagerduty_build_payload';

COMMENT ON FUNCTION pagerduty_build_payload(jsonb, text, text) IS
    'the body pagerduty_trigger() would send, routing_key left out; enqueues nothing';

-- not SECURITY DEFINER: the row is read with the inserting role's rights,
-- and only the enqueue runs as the extension's owner (see src/alert.c)
CREATE FUNCTION pagerduty_alert() RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'pagerduty_alert';

COMMENT ON FUNCTION pagerduty_alert() IS
    'row trigger for error-log tables: the new row is the event; arguments: services, then a severity';

CREATE FUNCTION pagerduty_retry(id bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = @extschema@, pg_temp
AS 'MODULE_PATHNAME', 'pagerduty_retry';

COMMENT ON FUNCTION pagerduty_retry(bigint) IS
    'put one failed event, or all with null, back to pending; returns how many';

CREATE FUNCTION pagerduty_wait(timeout interval DEFAULT '30s')
RETURNS boolean
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = @extschema@, pg_temp
AS 'MODULE_PATHNAME', 'pagerduty_wait';

COMMENT ON FUNCTION pagerduty_wait(interval) IS
    'wait until no pending event is due; false on timeout';

CREATE FUNCTION pagerduty_check(name text, failing boolean,
                                event jsonb DEFAULT '{}',
                                severity text DEFAULT NULL,
                                service text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = @extschema@, pg_temp
AS $function$
DECLARE
    -- the incident of a check is keyed by the cluster, the database and the
    -- check's name, so that the same check on two clusters pages twice
    check_key text;
    state pagerduty_checks;
    ev jsonb;
    used_service text;
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'check name must not be empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the check after what it watches, such as ''replication_lag''.';
    END IF;
    IF pg_catalog.length(name) > 200 THEN
        RAISE EXCEPTION 'check name is too long'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('The name has %s characters; at most 200 are allowed.', pg_catalog.length(name)),
                  HINT = 'Use a shorter name: it is part of the incident''s dedup key.';
    END IF;
    IF failing IS NULL THEN
        RAISE EXCEPTION 'failing must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass true when the check fails and false when it passes; coalesce() a condition that may be null.';
    END IF;
    IF event IS NULL OR pg_catalog.jsonb_typeof(event) <> 'object' THEN
        RAISE EXCEPTION 'event must be a JSON object'
            USING ERRCODE = 'invalid_text_representation',
                  HINT = 'Pass a JSON object such as ''{"summary": "replication lag is 42 s"}'', or leave it out.';
    END IF;

    -- one row per check, locked: overlapping runs of a check take turns
    INSERT INTO pagerduty_checks AS c (name) VALUES (pagerduty_check.name)
        ON CONFLICT ON CONSTRAINT pagerduty_checks_pkey DO NOTHING;
    SELECT * INTO state FROM pagerduty_checks AS c
        WHERE c.name = pagerduty_check.name FOR UPDATE;

    IF failing AND NOT state.failing THEN
        check_key := pg_catalog.format('pg-check:%s:%s:%s',
                            pg_catalog.left(pg_catalog.md5((pg_catalog.pg_control_system()).system_identifier::text), 8),
                            pg_catalog.current_database(), pagerduty_check.name);
        ev := event;
        IF NOT ev ?| ARRAY['summary', 'message', 'title'] THEN
            ev := ev || pg_catalog.jsonb_build_object('summary',
                                           pg_catalog.format('check %s is failing', pagerduty_check.name));
        END IF;
        PERFORM pagerduty_trigger(ev, severity, service, check_key);
        SELECT s.name INTO used_service FROM pagerduty_services AS s
            WHERE CASE WHEN pagerduty_check.service IS NULL THEN s.is_default
                       ELSE s.name = pagerduty_check.service END;
        UPDATE pagerduty_checks AS c
            SET failing = true, service = used_service, dedup_key = check_key,
                changed_at = now(), checked_at = now()
            WHERE c.name = pagerduty_check.name;
        RETURN 'triggered';
    ELSIF NOT failing AND state.failing THEN
        -- resolve the incident where it was opened, whatever service is given
        -- now; if that service has since been removed, where this call says
        IF NOT EXISTS (SELECT FROM pagerduty_services AS s WHERE s.name = state.service) THEN
            state.service := pagerduty_check.service;
        END IF;
        PERFORM pagerduty_resolve(state.dedup_key, state.service);
        UPDATE pagerduty_checks AS c
            SET failing = false, changed_at = now(), checked_at = now()
            WHERE c.name = pagerduty_check.name;
        RETURN 'resolved';
    END IF;

    UPDATE pagerduty_checks AS c SET checked_at = now()
        WHERE c.name = pagerduty_check.name;
    RETURN 'unchanged';
END
$function$;

COMMENT ON FUNCTION pagerduty_check(text, boolean, jsonb, text, text) IS
    'for scheduled checks: trigger when failing turns true, resolve when it turns false';

-------------------------------------------------------------------------------
-- Privileges
--
-- PUBLIC gets nothing: paging people is a privilege.  An administrator grants
-- EXECUTE on the enqueue functions to the roles that alert, and SELECT on
-- pagerduty_status to those that watch.  Routing keys stay readable only by
-- the extension's owner.
-------------------------------------------------------------------------------

REVOKE ALL ON TABLE pagerduty_services, pagerduty_outbox, pagerduty_checks,
                    pagerduty_status FROM PUBLIC;
REVOKE ALL ON FUNCTION
    pagerduty_services_guard(),
    pagerduty_add_service(text, text, boolean, text),
    pagerduty_trigger(jsonb, text, text, text),
    pagerduty_acknowledge(text, text),
    pagerduty_resolve(text, text),
    pagerduty_change(jsonb, text),
    pagerduty_build_payload(jsonb, text, text),
    pagerduty_alert(),
    pagerduty_retry(bigint),
    pagerduty_wait(interval),
    pagerduty_check(text, boolean, jsonb, text, text)
FROM PUBLIC;

-------------------------------------------------------------------------------
-- Is anything going to deliver what is enqueued here?
-------------------------------------------------------------------------------

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_catalog.unnest(pg_catalog.string_to_array(pg_catalog.current_setting('shared_preload_libraries'), ',')) AS l(lib)
        WHERE pg_catalog.regexp_replace(pg_catalog.btrim(lib, ' "'), '^.*/', '') = 'pagerduty')
    THEN
        RAISE WARNING 'pagerduty is not in shared_preload_libraries: events will be enqueued but not delivered'
            USING HINT = 'Add pagerduty to shared_preload_libraries, set pagerduty.database, and restart the server.';
    ELSIF pg_catalog.current_setting('pagerduty.database', true) IS DISTINCT FROM pg_catalog.current_database() THEN
        RAISE WARNING 'the pagerduty worker serves database "%", not this one: events enqueued here will not be delivered',
                      pg_catalog.current_setting('pagerduty.database', true)
            USING HINT = pg_catalog.format('Set pagerduty.database = %L and restart the server.', pg_catalog.current_database());
    END IF;
END
$$;
