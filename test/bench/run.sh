#!/usr/bin/env bash
# make bench: enqueue cost, drain rate and commit-to-arrival latency, each
# with a baseline measured in the same run (bench.py says what and how).
#
# Starts a throwaway cluster (pagerduty preloaded, its worker serving
# database "app", delivering to the stand-in with no rate limit) and the
# Events API stand-in (test/events_api.py), runs bench.py against them, and
# removes both at exit, also on failure or interruption.  Run it as a
# non-root user with pagerduty installed (make install); `make bench` does
# all of that.  The report goes to stdout, progress to stderr; with
# BENCH_OUT=file the report is also written there as Markdown.
#
# BENCH_SECONDS (10), BENCH_BACKLOG (20000) and BENCH_PROBES (300) change
# the length of the pgbench and wrk runs, the backlog and the number of
# latency probes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)

if [ "$(id -u)" -eq 0 ]; then
	echo "run.sh: initdb refuses root; run 'make bench', which runs this as postgres" >&2
	exit 1
fi

# The server the tests target, as in the Makefile: PostgreSQL 15's if there.
pg_config=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
[ -x "$pg_config" ] || pg_config=$(command -v pg_config) || {
	echo "run.sh: pg_config not found" >&2
	exit 1
}
bindir=$("$pg_config" --bindir)
if [ ! -f "$("$pg_config" --pkglibdir)/pagerduty.so" ]; then
	echo "run.sh: pagerduty is not installed for $("$pg_config" --version): run make install" >&2
	exit 1
fi
for tool in "$bindir/initdb" "$bindir/pg_ctl" "$bindir/psql" "$bindir/pgbench" wrk python3; do
	command -v "$tool" >/dev/null || {
		echo "run.sh: $tool not found (test/deps.sh installs what is missing)" >&2
		exit 1
	}
done

work=$(mktemp -d "${TMPDIR:-/tmp}/pagerduty-bench.XXXXXX")
data=$work/data
api_pid=
pg_started=
driver_pid=

cleanup()
{
	local status=$?
	trap - EXIT INT TERM
	if [ -n "$driver_pid" ] && kill -0 "$driver_pid" 2>/dev/null; then
		kill -TERM "$driver_pid" 2>/dev/null || true
		wait "$driver_pid" 2>/dev/null || true
	fi
	if [ -n "$pg_started" ]; then
		"$bindir/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
			"$bindir/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
	fi
	if [ -n "$api_pid" ]; then
		kill -TERM "$api_pid" 2>/dev/null || true
		wait "$api_pid" 2>/dev/null || true
	fi
	if [ "$status" -eq 130 ] || [ "$status" -eq 143 ]; then
		echo "bench interrupted" >&2
	elif [ "$status" -ne 0 ]; then
		for f in server.log api.err; do
			if [ -s "$work/$f" ]; then
				echo "=== $f (last lines)"
				tail -n 40 "$work/$f"
			fi
		done >&2
		echo "bench failed (status $status)" >&2
	fi
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The stand-in, on a free loopback port, without a request log (it would
# write and flush a line per request).
python3 "$top/test/events_api.py" --port 0 --port-file "$work/api.port" \
	>"$work/api.out" 2>"$work/api.err" &
api_pid=$!
for _ in $(seq 300); do
	[ -s "$work/api.port" ] && break
	kill -0 "$api_pid" 2>/dev/null || {
		echo "run.sh: the Events API stand-in exited at start" >&2
		exit 1
	}
	sleep 0.1
done
[ -s "$work/api.port" ] || {
	echo "run.sh: the Events API stand-in did not start within 30 s" >&2
	exit 1
}
api_port=$(cat "$work/api.port")

# The cluster.  It listens on a Unix socket in $work only, so no other
# server can be in its way; the port, free when picked, only names it.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bindir/initdb" -D "$data" -A trust -E UTF8 --locale=C --no-sync >"$work/initdb.log" 2>&1 || {
	cat "$work/initdb.log" >&2
	exit 1
}
cat >>"$data/postgresql.conf" <<EOF

# make bench
listen_addresses = ''
port = $port
unix_socket_directories = '$work'
shared_preload_libraries = 'pagerduty'
pagerduty.database = 'app'
pagerduty.events_url = 'http://127.0.0.1:$api_port/v2/enqueue'
pagerduty.rate_limit = 0
pagerduty.max_connections = 16
shared_buffers = '256MB'
max_wal_size = '4GB'
checkpoint_timeout = '30min'
log_line_prefix = '%m [%p] %b '
EOF
pg_started=1
"$bindir/pg_ctl" -D "$data" -l "$work/server.log" -w -t 60 start >/dev/null

export PGHOST=$work PGPORT=$port PGDATABASE=postgres
unset PGUSER PGPASSWORD PGSERVICE PGOPTIONS
export PG_BINDIR=$bindir BENCH_API="http://127.0.0.1:$api_port" BENCH_API_PID=$api_pid BENCH_WORK=$work
if [ -n "${BENCH_OUT:-}" ]; then
	# relative to where this was started, not to where bench.py runs
	case "$BENCH_OUT" in /*) ;; *) BENCH_OUT=$PWD/$BENCH_OUT ;; esac
	export BENCH_OUT
fi

# In the background, so that a signal to this script is handled at once.
python3 "$here/bench.py" &
driver_pid=$!
wait "$driver_pid"
