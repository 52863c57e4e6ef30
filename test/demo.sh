#!/usr/bin/env bash
# make demo: a throwaway PostgreSQL server with pagerduty preloaded, a local
# stand-in for the PagerDuty Events API (or the real PagerDuty, when
# PAGERDUTY_ROUTING_KEY is set), an error-log table with an alert trigger,
# and one error inserted.  Prints what "PagerDuty" received and the outbox
# row, then stops everything it started.
#
# Run as a user initdb accepts (make demo does that for you, as root).
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
bindir=/usr/lib/postgresql/15/bin
work=$(mktemp -d "${TMPDIR:-/tmp}/pagerduty-demo.XXXXXX")
standin_pid=

cleanup()
{
	"$bindir/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
	[ -n "$standin_pid" ] && kill "$standin_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ -n "${PAGERDUTY_ROUTING_KEY:-}" ]; then
	key=$PAGERDUTY_ROUTING_KEY
	events_url=''		# pagerduty.events_url keeps its default: the real PagerDuty
	say "Paging the real PagerDuty (routing key ...${key: -4})"
else
	key=DemoRoutingKey000000000000000001
	python3 "$src/test/events_api.py" --port 0 --port-file "$work/standin.port" >/dev/null &
	standin_pid=$!
	for _ in $(seq 1 300); do [ -s "$work/standin.port" ] && break; sleep 0.1; done
	[ -s "$work/standin.port" ] || { echo "the Events API stand-in did not start" >&2; exit 1; }
	events_url="http://127.0.0.1:$(cat "$work/standin.port")/v2/enqueue"
	say "A local stand-in for the PagerDuty Events API listens at $events_url"
	echo "(set PAGERDUTY_ROUTING_KEY to an Events API v2 integration key to page the real PagerDuty)"
fi

say "A throwaway PostgreSQL server with shared_preload_libraries = 'pagerduty'"
"$bindir/initdb" -D "$work/data" -A trust -U postgres --no-sync >/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >> "$work/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$work'
port = $port
shared_preload_libraries = 'pagerduty'
pagerduty.database = 'app'
EOF
[ -n "$events_url" ] && echo "pagerduty.events_url = '$events_url'" >> "$work/data/postgresql.conf"
"$bindir/pg_ctl" -D "$work/data" -l "$work/server.log" -w start >/dev/null
echo "started on $work, port $port"

psql=("$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p "$port" -U postgres)
"${psql[@]}" -d postgres -c 'CREATE DATABASE app'

say "An error-log table that pages on error and fatal rows"
cat <<'SQL' | tee "$work/setup.sql"
CREATE EXTENSION pagerduty;
SELECT pagerduty_add_service('database', :'key', is_default => true);

CREATE TABLE app_errors (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    level       text NOT NULL,
    message     text NOT NULL,
    culprit     text,
    url         text
);
CREATE TRIGGER app_errors_page
    AFTER INSERT ON app_errors
    FOR EACH ROW WHEN (NEW.level IN ('error', 'fatal'))
    EXECUTE FUNCTION pagerduty_alert('database', 'default');
SQL
# the key goes in as a psql variable, and log_statement is off for this session
"${psql[@]}" -d app -v key="$key" -c "SET log_statement = 'none'" -f "$work/setup.sql" >/dev/null

say "The application logs an error (and an info row, which does not page)"
cat <<'SQL' | tee "$work/insert.sql"
INSERT INTO app_errors (level, message, culprit, url) VALUES
    ('fatal', 'could not write block 1234 of relation base/16384/16385: No space left on device',
     'storage.flush', 'https://grafana.example.com/d/disk'),
    ('info', 'user 42 logged in', 'auth.login', NULL);
SQL
"${psql[@]}" -d app -f "$work/insert.sql"

sent=$("${psql[@]}" -d app -At -c "SELECT pagerduty_wait('30 s')")

if [ -n "$standin_pid" ]; then
	say "What \"PagerDuty\" received"
	python3 - "$(cat "$work/standin.port")" <<'PY'
import json, sys, urllib.request
reqs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/_control/requests"))
for r in reqs:
    body = dict(r["body"])
    body["routing_key"] = "..." + body["routing_key"][-4:]
    print(f"POST {r['path']}  ->  {r['status']} ({'valid' if not r['errors'] else 'invalid: ' + '; '.join(r['errors'])})")
    print(json.dumps(body, indent=2, ensure_ascii=False))
print(f"\n{len(reqs)} request(s) received")
PY
fi

say "The outbox row"
"${psql[@]}" -d app -x -c "SELECT id, service, event_action, severity, dedup_key, status, attempts,
       http_status, last_error, enqueued_at, delivered_at, delivered_at - enqueued_at AS took
FROM pagerduty_outbox"

if [ "$sent" != t ]; then
	echo "the event was not delivered within 30 s; see last_error above" >&2
	exit 1
fi
say "Delivered. Everything this demo started is stopped and removed."
