#!/usr/bin/env python3
"""The measurements of `make bench`, each against a baseline taken in the same run.

test/bench/run.sh starts a throwaway cluster (pagerduty preloaded, the worker serving
database "app", rate limit off) and the Events API stand-in (test/events_api.py), then
runs this with the connection in PGHOST/PGPORT and the rest in BENCH_* variables:

1. Enqueue cost.  pgbench, in database "bench" (the worker does not serve it, so no
   delivery competes): pagerduty_trigger() of a ~1 KB Sentry-like event with a random
   message, against a plain INSERT of the same row (same event, service, severity,
   dedup key length and payload) into a table with the outbox's columns and only a
   bigserial primary key.  1 and 2 clients, -M prepared, BENCH_SECONDS each.
2. Drain rate.  BENCH_BACKLOG events (distinct dedup keys, four services) committed in
   one transaction in "app"; the clock runs from that COMMIT until pagerduty_wait()
   says nothing is due any more.  Baseline: wrk -t2 -c16 POSTing a body the worker
   sent, to the same stand-in: the most that stand-in takes on this machine.
3. Commit-to-arrival latency.  BENCH_PROBES single-event transactions from one psql
   session, 20 ms apart; commit time is clock_timestamp() of the statement right after
   COMMIT returned, arrival time is the stand-in's `t`, matched by dedup key.
   Baseline: the round trip of the same POST sent straight to the stand-in over one
   warm connection (wrk -t1 -c1): what the application would wait for if it called
   the Events API itself.

Prints a plain table on stdout, progress on stderr, and writes the same as Markdown
to BENCH_OUT if set.  Exits non-zero if anything does not work as it should (an event
not delivered, a request refused, a tool failing).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

BINDIR = os.environ["PG_BINDIR"]
API = os.environ["BENCH_API"]                 # http://127.0.0.1:PORT
WORK = os.environ["BENCH_WORK"]               # a private temporary directory
HERE = os.path.dirname(os.path.abspath(__file__))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
BACKLOG = int(os.environ.get("BENCH_BACKLOG", "20000"))
PROBES = int(os.environ.get("BENCH_PROBES", "300"))
PROBE_GAP = 0.02                              # seconds between latency probes
SERVICES = 4                                  # services (routing keys) of the backlog

# Where the varying part of an event goes, in templates.
TOKEN = "__N__"

# A Sentry-like error event, about 1 KB as JSON.
EVENT = {
    "event_id": "9f3c2a7be41d4c0f8d2e6a1b5c7d9e03",
    "message": f"PaymentDeclined: card expired for order {TOKEN}",
    "level": "error",
    "logger": "billing.charge",
    "platform": "python",
    "culprit": "billing.charge in charge_card",
    "transaction": "POST /api/orders/{id}/pay",
    "timestamp": 1733310000.125,
    "environment": "production",
    "release": "shop@4.12.0",
    "server_name": "web-3.eu-west-1",
    "url": f"https://shop.example.com/api/orders/{TOKEN}/pay",
    "tags": {"region": "eu-west-1", "customer_tier": "gold",
             "payment_provider": "stripe", "browser": "Firefox 119"},
    "user": {"id": "48213", "email": "jane.doe@example.com", "ip_address": "203.0.113.42"},
    "request": {"method": "POST",
                "headers": {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/119.0",
                            "Accept": "application/json"}},
    "exception": {"values": [{
        "type": "PaymentDeclined", "value": "card expired", "module": "billing.errors",
        "stacktrace": {"frames": [
            {"filename": "billing/charge.py", "function": "charge_card",
             "lineno": 118, "in_app": True},
            {"filename": "billing/gateway.py", "function": "authorize",
             "lineno": 64, "in_app": True},
            {"filename": "stripe/api_requestor.py", "function": "request",
             "lineno": 301, "in_app": False}]}}]},
    "contexts": {"os": {"name": "Linux", "version": "6.1.0"},
                 "runtime": {"name": "CPython", "version": "3.11.7"}},
}
EVENT_TEXT = json.dumps(EVENT)

# Between a ":" and what pgbench would read as a variable name.
PGBENCH_SPLIT = re.compile(r"(?<=:)(?=[A-Za-z0-9_\u0080-\U0010ffff])")


class BenchError(Exception):
    pass


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, timeout: float, input: str | None = None,
        env: dict[str, str] | None = None) -> str:
    """Run a command; its stdout, or BenchError with its output if it fails."""
    try:
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{cmd[0]} did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} exited with status {proc.returncode}\n"
                         f"{proc.stderr.strip()}\n{proc.stdout[-3000:].strip()}")
    return proc.stdout


def psql(db: str, sql: str, timeout: float = 120) -> list[str]:
    """Run SQL in one psql session; the output rows, fields separated by '|'."""
    out = run([f"{BINDIR}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db],
              input=sql, timeout=timeout)
    return out.splitlines()


def psql_value(db: str, sql: str) -> str:
    return "\n".join(psql(db, sql))


def api(method: str, path: str):
    """Call the stand-in's control API; the decoded JSON answer."""
    request = urllib.request.Request(API + path, method=method)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def expression(template: str, value: str, quote=literal) -> str:
    """A SQL text expression: template with each TOKEN replaced by the SQL value."""
    pieces = []
    for index, part in enumerate(template.split(TOKEN)):
        if index:
            pieces.append(value)
        pieces.append(quote(part))
    return "(" + " || ".join(pieces) + ")"


def pgbench_expression(template: str) -> str:
    """expression() for a pgbench script, the random :n in place of TOKEN.

    pgbench takes any ":name" for a variable, inside quotes too (a time such as
    12:30:00 in a payload), so each such colon ends a literal: '12:' || '30:' || '00',
    in parentheses, which the planner folds back into one constant.
    """
    return expression(template, ":n", pgbench_literal)


def pgbench_literal(text: str) -> str:
    pieces = PGBENCH_SPLIT.split(text)
    if len(pieces) == 1:
        return literal(text)
    return "(" + " || ".join(literal(piece) for piece in pieces) + ")"


def routing_key(n: int) -> str:
    return f"BenchKey{n:024d}"   # 32 characters from [A-Za-z0-9]


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def wait_for(what: str, check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(0.1)


# --------------------------------------------------------------------------- setup

def setup() -> None:
    log("setting up databases app (served by the worker) and bench (not served)")
    psql("postgres", "CREATE DATABASE app; CREATE DATABASE bench;")
    services = "".join(
        f"SELECT pagerduty_add_service('svc{i}', '{routing_key(i)}', {str(i == 0).lower()});\n"
        for i in range(SERVICES))
    psql("app", "SET client_min_messages = error;\nCREATE EXTENSION pagerduty;\n" + services)
    # CREATE EXTENSION warns here that the worker serves another database: that is
    # the point of this database.
    psql("bench", f"""
        SET client_min_messages = error;
        CREATE EXTENSION pagerduty;
        SELECT pagerduty_add_service('bench', '{routing_key(99)}', true);
        -- the outbox's columns and defaults, a bigserial primary key, nothing else
        CREATE TABLE bench_baseline (LIKE pagerduty_outbox INCLUDING DEFAULTS);
        CREATE SEQUENCE bench_baseline_id_seq OWNED BY bench_baseline.id;
        ALTER TABLE bench_baseline
            ALTER COLUMN id SET DEFAULT nextval('bench_baseline_id_seq'),
            ADD PRIMARY KEY (id);
    """)
    wait_for("the pagerduty worker to connect to app", lambda: psql_value("postgres", """
        SELECT count(*) FROM pg_stat_activity
        WHERE backend_type = 'pagerduty worker' AND datname = 'app'""") == "1")


# --------------------------------------------------------------------------- 1. enqueue

def write_pgbench_scripts() -> tuple[str, str, dict]:
    """The enqueue and the INSERT script; and sizes, for the notes."""
    # The row pagerduty_trigger() writes for the template event, to copy in the INSERT.
    psql("bench", f"SELECT pagerduty_trigger({literal(EVENT_TEXT)}::jsonb)")
    row = psql("bench", """
        SELECT service, event_action, severity, length(dedup_key),
               octet_length(event::text), octet_length(payload::text)
        FROM pagerduty_outbox ORDER BY id DESC LIMIT 1""")[0].split("|")
    service, action, severity, key_length = row[0], row[1], row[2], int(row[3])
    payload = psql_value("bench", "SELECT payload::text FROM pagerduty_outbox ORDER BY id DESC LIMIT 1")
    psql("bench", "DELETE FROM pagerduty_outbox")
    if TOKEN not in payload:
        raise BenchError("the stored payload does not contain the event's message")
    if key_length != 32:
        raise BenchError(f"unexpected dedup key length {key_length}")

    event = pgbench_expression(EVENT_TEXT)
    enqueue = os.path.join(WORK, "enqueue.sql")
    with open(enqueue, "w", encoding="utf-8") as f:
        f.write("\\set n random(1, 1000000000)\n")
        f.write(f"SELECT pagerduty_trigger({event}::jsonb, NULL, NULL, NULL);\n")
    insert = os.path.join(WORK, "insert.sql")
    with open(insert, "w", encoding="utf-8") as f:
        f.write("\\set n random(1, 1000000000)\n")
        f.write("INSERT INTO bench_baseline (service, event_action, dedup_key, severity, event, payload)"
                f" VALUES ({literal(service)}, {literal(action)},"
                f" md5({pgbench_expression(EVENT['message'])}), {literal(severity)},"
                f" {event}::jsonb, {pgbench_expression(payload)}::json);\n")
    sizes = {"event": int(row[4]), "payload": int(row[5])}
    return enqueue, insert, sizes


def pgbench(script: str, clients: int) -> dict:
    out = run([f"{BINDIR}/pgbench", "-n", "-M", "prepared", "-c", str(clients),
               "-j", str(clients), "-T", str(SECONDS), "-f", script, "bench"],
              timeout=SECONDS + 120)
    tps = re.search(r"^tps = ([0-9.]+)", out, re.M)
    latency = re.search(r"^latency average = ([0-9.]+) ms", out, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
    if not (tps and latency):
        raise BenchError(f"cannot read pgbench's output:\n{out}")
    if failed and int(failed.group(1)):
        raise BenchError(f"pgbench: {failed.group(1)} transactions failed:\n{out}")
    return {"tps": float(tps.group(1)), "us": float(latency.group(1)) * 1000}


def bench_enqueue() -> dict:
    enqueue, insert, sizes = write_pgbench_scripts()
    results = {"sizes": sizes}
    for clients in (1, 2):
        for name, script in (("insert", insert), ("enqueue", enqueue)):
            log(f"enqueue cost: pgbench {name}, {clients} client(s), {SECONDS} s")
            psql("bench", "CHECKPOINT")
            results[(name, clients)] = pgbench(script, clients)
    rows = int(psql_value("bench", "SELECT count(*) FROM pagerduty_outbox"))
    if rows == 0:
        raise BenchError("pgbench's pagerduty_trigger() calls left no outbox rows")
    return results


# --------------------------------------------------------------------------- 2. drain

def wrk(connections: int, threads: int, seconds: int, body_file: str,
        gap_ms: int | None = None) -> dict:
    """wrk POSTing body_file to the stand-in (post.lua), each connection waiting
    gap_ms before each request if given; the figures post.lua reports."""
    env = dict(os.environ, BENCH_BODY=body_file)
    if gap_ms is not None:
        env["BENCH_GAP_MS"] = str(gap_ms)
    out = run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
               "-s", os.path.join(HERE, "post.lua"), API + "/v2/enqueue"],
              timeout=seconds + 60, env=env)
    figures = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == "bench":
            figures[fields[1]] = int(fields[2])
    if "requests" not in figures:
        raise BenchError(f"cannot read wrk's output:\n{out}")
    errors = {k: v for k, v in figures.items() if k.startswith("errors_") and v}
    if errors or figures["requests"] == 0:
        raise BenchError(f"wrk: {figures['requests']} requests, errors {errors}:\n{out}")
    figures["rate"] = figures["requests"] / (figures["duration_us"] / 1e6)
    return figures


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_drain() -> dict:
    # Nothing has been sent yet, so the stand-in's seq numbers count the backlog's requests.
    if api("GET", "/_control/stats")["requests"]:
        raise BenchError("the stand-in received events before the backlog")
    worker = int(psql_value("postgres", """
        SELECT pid FROM pg_stat_activity WHERE backend_type = 'pagerduty worker'"""))
    standin = int(os.environ["BENCH_API_PID"])
    cpu_before = cpu_seconds(worker), cpu_seconds(standin)

    event = expression(EVENT_TEXT, "i::text")
    log(f"drain: enqueueing {BACKLOG} events in one transaction, then delivering them")
    out = psql("app", f"""
        SELECT extract(epoch FROM clock_timestamp());
        BEGIN;
        SELECT count(pagerduty_trigger({event}::jsonb, NULL, 'svc' || i % {SERVICES}, NULL))
        FROM generate_series(1, {BACKLOG}) AS i;
        COMMIT;
        SELECT extract(epoch FROM clock_timestamp());
        SELECT pagerduty_wait('240 s');
        SELECT extract(epoch FROM clock_timestamp());
    """, timeout=400)
    started, count, committed, waited, done = out
    if int(count) != BACKLOG or waited != "t":
        raise BenchError(f"backlog: {count} enqueued, pagerduty_wait() returned {waited}")
    seconds = float(done) - float(committed)
    cpu = cpu_seconds(worker) - cpu_before[0], cpu_seconds(standin) - cpu_before[1]

    statuses = dict(tuple(line.split("|")) for line in psql("app", """
        SELECT status, count(*) FROM pagerduty_outbox GROUP BY status"""))
    stats = api("GET", "/_control/stats")
    requests = stats["requests"]
    # At least once: a request sent again (after a timeout, say) is allowed.
    if statuses != {"delivered": str(BACKLOG)} or stats["by_status"] != {"202": requests} \
            or requests < BACKLOG:
        raise BenchError(f"backlog not delivered as it should: outbox {statuses}, "
                         f"stand-in {stats}")
    # How the pace changed: the first and the last quarter of the deliveries.
    q1, q3, last = (float(t) for t in psql("app", """
        SELECT extract(epoch FROM t) FROM unnest((
            SELECT percentile_disc(ARRAY[0.25, 0.75, 1]) WITHIN GROUP (ORDER BY delivered_at)
            FROM pagerduty_outbox)) AS t"""))
    quarter = BACKLOG / 4

    # The last body the worker sent, for wrk.
    body = api("GET", f"/_control/requests?since={requests - 1}")
    if len(body) != 1 or body[0]["status"] != 202:
        raise BenchError("cannot find the last request of the backlog")
    body_file = os.path.join(WORK, "body.json")
    with open(body_file, "w", encoding="utf-8") as f:
        f.write(json.dumps(body[0]["body"], separators=(",", ":"), ensure_ascii=False))
    api("DELETE", "/_control/requests")

    log(f"drain: ceiling, wrk -t2 -c16 -d{SECONDS}s")
    ceiling = wrk(16, 2, SECONDS, body_file)
    api("DELETE", "/_control/requests")
    return {
        "rate": BACKLOG / seconds, "seconds": seconds,
        "enqueue_seconds": float(committed) - float(started),
        "first_quarter": quarter / (q1 - float(committed)),
        "last_quarter": quarter / (last - q3),
        "requests": requests, "worker_cpu": cpu[0], "standin_cpu": cpu[1],
        "ceiling": ceiling, "body_file": body_file, "raw_size": body[0]["raw_size"],
    }


# --------------------------------------------------------------------------- 3. latency

def bench_latency(body_file: str) -> dict:
    api("DELETE", "/_control/requests")
    lines = []
    for i in range(1, PROBES + 1):
        event = EVENT_TEXT.replace(TOKEN, f"latency-{i}")
        lines.append(f"""SELECT pg_sleep({PROBE_GAP});
BEGIN;
SELECT pagerduty_trigger({literal(event)}::jsonb, NULL, NULL, 'bench-latency-{i}');
COMMIT;
SELECT 'committed', {i}, extract(epoch FROM clock_timestamp());
""")
    log(f"latency: {PROBES} single-event transactions, {PROBE_GAP * 1000:.0f} ms apart")
    out = psql("app", "".join(lines) + "SELECT 'waited', pagerduty_wait('60 s');\n", timeout=300)
    committed = {}
    for line in out:
        fields = line.split("|")
        if fields[0] == "committed":
            committed[f"bench-latency-{fields[1]}"] = float(fields[2])
        elif fields[0] == "waited" and fields[1] != "t":
            raise BenchError("pagerduty_wait() timed out after the latency probes")
    arrived = {}
    for record in api("GET", "/_control/requests"):
        if record["status"] != 202:
            raise BenchError(f"the stand-in refused a probe: {record['errors']}")
        arrived.setdefault(record["dedup_key"], record["t"])
    missing = [key for key in committed if key not in arrived]
    if len(committed) != PROBES or missing:
        raise BenchError(f"latency probes: {len(committed)} committed, {len(missing)} not arrived")
    latencies = sorted(arrived[key] - t for key, t in committed.items())
    api("DELETE", "/_control/requests")

    # The same number of requests at the same pace, one connection.
    seconds = math.ceil(PROBES * PROBE_GAP)
    log(f"latency: baseline, wrk -t1 -c1 -d{seconds}s, {PROBE_GAP * 1000:.0f} ms apart")
    direct = wrk(1, 1, seconds, body_file, gap_ms=round(PROBE_GAP * 1000))
    api("DELETE", "/_control/requests")
    return {
        "p50": percentile(latencies, 50) * 1000, "p99": percentile(latencies, 99) * 1000,
        "max": latencies[-1] * 1000, "min": latencies[0] * 1000,
        "http_p50": direct["latency_p50_us"] / 1000, "http_p99": direct["latency_p99_us"] / 1000,
        "http_max": direct["latency_max_us"] / 1000, "http_requests": direct["requests"],
        "http_seconds": seconds,
    }


# --------------------------------------------------------------------------- report

def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0))
    return f"{cpus} CPUs ({model})"


def report(enq: dict, drain: dict, lat: dict, started: datetime.datetime) -> tuple[str, str]:
    version = psql_value("postgres", "SHOW server_version")
    ext = psql_value("app", "SELECT extversion FROM pg_extension WHERE extname = 'pagerduty'")
    header = [
        ("date", started.strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", machine()),
        ("software", f"PostgreSQL {version}, pagerduty {ext}, "
                     "Events API stand-in test/events_api.py"),
    ]

    rows = []
    for clients in (1, 2):
        e, b = enq[("enqueue", clients)], enq[("insert", clients)]
        rows.append((f"enqueue, {clients} client{'s' if clients > 1 else ''}",
                     f"{e['tps']:.0f} tps, {e['us']:.0f} µs each",
                     f"{b['tps']:.0f} tps, {b['us']:.0f} µs each: plain INSERT",
                     f"{e['us'] / b['us']:.2f}× the time"))
    ceiling = drain["ceiling"]["rate"]
    rows.append((f"drain of a {BACKLOG}-event backlog",
                  f"{drain['rate']:.0f} events/s",
                  f"{ceiling:.0f} requests/s: wrk -t2 -c16, same stand-in",
                  f"{drain['rate'] / ceiling:.2f} of the ceiling"))
    for name, label in (("p50", "p50"), ("p99", "p99"), ("max", "max")):
        rows.append((f"commit-to-arrival {label}",
                     f"{lat[name]:.2f} ms",
                     f"{lat['http_' + name]:.2f} ms: the POST alone, wrk -c1",
                     f"{lat[name] / lat['http_' + name]:.1f}×"))
    columns = ("figure", "value", "baseline", "ratio")

    notes = [
        f"Enqueue: pgbench -n -M prepared -T {SECONDS}, in a database the worker does not "
        "serve. Value: `SELECT pagerduty_trigger(event, NULL, NULL, NULL)` of a Sentry-like "
        f"event ({enq['sizes']['event']} bytes as jsonb text, random message; the stored "
        f"payload is {enq['sizes']['payload']} bytes). Baseline: `INSERT` of the same row "
        "(event, service, severity, a 32-character dedup key, the same payload as json) into "
        "a logged table with the outbox's columns and only a bigserial primary key. "
        "fsync and synchronous_commit on. Ratio: time per enqueue over time per INSERT.",
        f"Drain: {BACKLOG} events with distinct dedup keys over {SERVICES} services, "
        f"enqueued in one transaction ({drain['enqueue_seconds']:.1f} s), "
        "pagerduty.rate_limit = 0, pagerduty.max_connections = 16; timed from COMMIT until "
        f"pagerduty_wait() returned true ({drain['seconds']:.1f} s); all delivered, "
        f"{drain['requests']} requests, all answered 202"
        f"{' (at least once: some sent twice)' if drain['requests'] > BACKLOG else ''}. "
        f"First quarter of the backlog at {drain['first_quarter']:.0f} events/s, last quarter "
        f"at {drain['last_quarter']:.0f}/s. CPU used meanwhile: worker "
        f"{drain['worker_cpu']:.1f} s, stand-in {drain['standin_cpu']:.1f} s. "
        "Baseline: wrk POSTing a body the worker sent "
        f"({drain['raw_size']} bytes) to the same stand-in for {SECONDS} s, 16 connections: "
        "the most this stand-in takes on this machine.",
        f"Latency: {PROBES} single-event transactions from one psql session, "
        f"{PROBE_GAP * 1000:.0f} ms apart. From clock_timestamp() of the statement right "
        "after COMMIT returned to the stand-in's arrival time of the event, matched by dedup "
        f"key (min {lat['min']:.2f} ms). Baseline: the round trip of the same POST sent by wrk "
        f"straight to the same stand-in over one warm connection, {PROBE_GAP * 1000:.0f} ms "
        f"apart ({lat['http_requests']} requests in {lat['http_seconds']} s): what the "
        "application would wait for if it called the Events API itself.",
        "Each figure and its baseline come from this run on this machine; other load on it "
        "shows in them.",
    ]

    # plain text
    widths = [max(len(str(r[i])) for r in rows + [columns]) for i in range(4)]
    text = ["pagerduty benchmark"]
    text += [f"{k + ':':<10}{v}" for k, v in header]
    text.append("")
    for r in [columns, tuple("-" * w for w in widths)] + rows:
        text.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    text.append("")
    for note in notes:
        text += textwrap.wrap(note, 100, initial_indent="- ", subsequent_indent="  ")

    # Markdown
    md = ["# pagerduty benchmark", ""]
    md += [f"- {k}: {v}" for k, v in header]
    md += ["", "| " + " | ".join(columns) + " |", "|---|---:|---|---:|"]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md.append("")
    md += [f"- {n}" for n in notes]
    return "\n".join(text) + "\n", "\n".join(md) + "\n"


def main() -> int:
    # make run.sh's TERM stop the tool running too (subprocess.run kills its child
    # when interrupted by an exception)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.monotonic()
    try:
        setup()
        enq = bench_enqueue()
        drain = bench_drain()
        lat = bench_latency(drain["body_file"])
        text, md = report(enq, drain, lat, started)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    log(f"done in {time.monotonic() - clock:.0f} s")
    sys.stdout.write(text)
    out = os.environ.get("BENCH_OUT")
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(md)
        log(f"Markdown written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
