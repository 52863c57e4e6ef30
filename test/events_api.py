#!/usr/bin/env python3
"""Local stand-in for the PagerDuty Events API v2, used by the pagerduty extension's tests.

It accepts alert events (POST .../enqueue) and change events (POST .../change/enqueue),
checks each one against PagerDuty's documented rules (the Events API v2 OpenAPI schema plus
the limits the prose documentation adds), answers like PagerDuty does, and records every
event request so tests can inspect what the extension sent.  Tests can also install
"rules" that make it misbehave: answer a given status, answer slowly, or drop the
connection.  Everything is driven over HTTP under /_control (see the Handler docstring).

The rules are encoded here on purpose; nothing is read from the OpenAPI file at run time.
Some checks are stricter than PagerDuty itself (unknown fields are errors, a payload on
acknowledge/resolve is an error) so that bugs in our client show up in tests.

Usage: events_api.py [--host 127.0.0.1] [--port 0] [--port-file FILE] [--log FILE]
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO
from urllib.parse import parse_qs, urlsplit

MAX_EVENT_BYTES = 512 * 1024          # PagerDuty rejects events larger than 512 KB
MAX_CONTROL_BYTES = 1024 * 1024       # generous cap for /_control request bodies
MAX_SUMMARY_CHARS = 1024
MAX_DEDUP_KEY_CHARS = 255

ROUTING_KEY_RE = re.compile(r"[A-Za-z0-9]{32}")
# ISO 8601 / RFC 3339 date-time with a mandatory zone: Z, +hh:mm or +hhmm.  The shape is
# checked here; datetime.fromisoformat then rejects out-of-range fields (month 13, hour 25...).
TIMESTAMP_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:?\d{2})", re.ASCII)
CHUNK_SIZE_RE = re.compile(rb"[0-9A-Fa-f]{1,16}")

EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
ALERT_FIELDS = ("routing_key", "event_action", "dedup_key", "payload",
                "client", "client_url", "links", "images")
TRIGGER_ONLY_FIELDS = ("payload", "client", "client_url", "links", "images")
ALERT_PAYLOAD_FIELDS = ("summary", "source", "severity", "timestamp",
                        "component", "group", "class", "custom_details")
CHANGE_FIELDS = ("routing_key", "payload", "links", "images")
CHANGE_PAYLOAD_FIELDS = ("summary", "timestamp", "source", "custom_details")
LINK_FIELDS = ("href", "text")
IMAGE_FIELDS = ("src", "href", "alt")

RULE_FIELDS = ("routing_key", "path", "action", "status", "retry_after", "body", "delay", "times")
RULE_ACTIONS = ("status", "slow", "drop")

TOO_LARGE_ERROR = "event is larger than 512 KB"


# --------------------------------------------------------------------------- validation

def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def check_unknown(errors: list[str], obj: dict, allowed: tuple[str, ...], where: str) -> None:
    """Report every key of obj that is not in allowed."""
    for key in obj:
        if key not in allowed:
            errors.append(f"unknown field {where}{key} (allowed: {', '.join(allowed)})")


def check_string(errors: list[str], obj: dict, key: str, where: str, *,
                 required: bool = False, nonempty: bool = False,
                 max_chars: int | None = None) -> str | None:
    """Check that obj[key], if present (or if required), is a string within the limits.

    Lengths are counted in characters (code points), not bytes.  Returns the string, or
    None when it is absent or not a string.
    """
    name = where + key
    if key not in obj:
        if required:
            errors.append(f"{name} is required")
        return None
    value = obj[key]
    if not isinstance(value, str):
        errors.append(f"{name} must be a string, got {json_type(value)}")
        return None
    if nonempty and not value:
        errors.append(f"{name} must not be empty")
    elif max_chars is not None and len(value) > max_chars:
        errors.append(f"{name} must be at most {max_chars} characters, got {len(value)}")
    return value


def check_enum(errors: list[str], obj: dict, key: str, where: str,
               choices: tuple[str, ...]) -> None:
    """Check that the required obj[key] is one of choices."""
    name = where + key
    if key not in obj:
        errors.append(f"{name} is required (one of {', '.join(choices)})")
    elif obj[key] not in choices:
        errors.append(f"{name} must be one of {', '.join(choices)}, got {json.dumps(obj[key])}")


def check_url(errors: list[str], obj: dict, key: str, where: str, *,
              required: bool = False) -> None:
    """Check that obj[key], if present (or if required), is an absolute http(s) URL."""
    value = check_string(errors, obj, key, where, required=required)
    if value is None:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        errors.append(f"{where}{key} must be an http:// or https:// URL, got {json.dumps(value)}")


def check_timestamp(errors: list[str], obj: dict, where: str) -> None:
    """Check the optional obj["timestamp"]: an ISO 8601 date-time with a time zone."""
    value = check_string(errors, obj, "timestamp", where)
    if value is None:
        return
    problem = None
    if not TIMESTAMP_RE.fullmatch(value):
        problem = "expected e.g. 2015-07-17T08:42:58.315+0000 or 2015-07-17T08:42:58Z"
    else:
        try:
            datetime.fromisoformat(value.upper())
        except ValueError as exc:
            problem = str(exc)
    if problem:
        errors.append(f"{where}timestamp must be an ISO 8601 date-time with a time zone, "
                      f"got {json.dumps(value)} ({problem})")


def check_object(errors: list[str], obj: dict, key: str, where: str) -> None:
    """Check that obj[key], if present, is a JSON object."""
    if key in obj and not isinstance(obj[key], dict):
        errors.append(f"{where}{key} must be an object, got {json_type(obj[key])}")


def check_routing_key(errors: list[str], body: dict) -> None:
    value = check_string(errors, body, "routing_key", "", required=True)
    if value is not None and not ROUTING_KEY_RE.fullmatch(value):
        errors.append("routing_key must be exactly 32 characters from [A-Za-z0-9], "
                      f"got {len(value)} characters")


def check_array_of_objects(errors: list[str], body: dict, key: str, allowed: tuple[str, ...],
                           url_key: str, optional_urls: tuple[str, ...],
                           optional_strings: tuple[str, ...]) -> None:
    """Check "links" or "images": an array of objects with one required URL field."""
    if key not in body:
        return
    items = body[key]
    if not isinstance(items, list):
        errors.append(f"{key} must be an array, got {json_type(items)}")
        return
    for index, item in enumerate(items):
        where = f"{key}[{index}]."
        if not isinstance(item, dict):
            errors.append(f"{key}[{index}] must be an object, got {json_type(item)}")
            continue
        check_unknown(errors, item, allowed, where)
        check_url(errors, item, url_key, where, required=True)
        for name in optional_urls:
            check_url(errors, item, name, where)
        for name in optional_strings:
            check_string(errors, item, name, where)


def check_links_and_images(errors: list[str], body: dict) -> None:
    check_array_of_objects(errors, body, "links", LINK_FIELDS, "href", (), ("text",))
    check_array_of_objects(errors, body, "images", IMAGE_FIELDS, "src", ("href",), ("alt",))


def check_alert_payload(errors: list[str], payload: Any) -> None:
    if not isinstance(payload, dict):
        errors.append(f"payload must be an object, got {json_type(payload)}")
        return
    where = "payload."
    check_unknown(errors, payload, ALERT_PAYLOAD_FIELDS, where)
    check_string(errors, payload, "summary", where, required=True, nonempty=True,
                 max_chars=MAX_SUMMARY_CHARS)
    check_string(errors, payload, "source", where, required=True, nonempty=True)
    check_enum(errors, payload, "severity", where, SEVERITIES)
    check_timestamp(errors, payload, where)
    for key in ("component", "group", "class"):
        check_string(errors, payload, key, where)
    check_object(errors, payload, "custom_details", where)


def validate_alert(body: dict) -> list[str]:
    """All rule violations of an alert event (trigger/acknowledge/resolve)."""
    errors: list[str] = []
    check_unknown(errors, body, ALERT_FIELDS, "")
    check_routing_key(errors, body)
    check_enum(errors, body, "event_action", "", EVENT_ACTIONS)
    check_string(errors, body, "dedup_key", "", nonempty=True, max_chars=MAX_DEDUP_KEY_CHARS)
    action = body.get("event_action")
    if action in ("acknowledge", "resolve"):
        if "dedup_key" not in body:
            errors.append(f"dedup_key is required for {action} events")
        for key in TRIGGER_ONLY_FIELDS:
            if key in body:
                errors.append(f"{key} is not allowed on {action} events (trigger only)")
        return errors
    if "payload" in body:
        check_alert_payload(errors, body["payload"])
    elif action == "trigger":
        errors.append("payload is required for trigger events")
    check_string(errors, body, "client", "")
    check_url(errors, body, "client_url", "")
    check_links_and_images(errors, body)
    return errors


def validate_change(body: dict) -> list[str]:
    """All rule violations of a change event."""
    errors: list[str] = []
    check_unknown(errors, body, CHANGE_FIELDS, "")
    check_routing_key(errors, body)
    payload = body.get("payload")
    if "payload" not in body:
        errors.append("payload is required")
    elif not isinstance(payload, dict):
        errors.append(f"payload must be an object, got {json_type(payload)}")
    else:
        where = "payload."
        check_unknown(errors, payload, CHANGE_PAYLOAD_FIELDS, where)
        check_string(errors, payload, "summary", where, required=True, nonempty=True,
                     max_chars=MAX_SUMMARY_CHARS)
        check_timestamp(errors, payload, where)
        check_string(errors, payload, "source", where)
        check_object(errors, payload, "custom_details", where)
    check_links_and_images(errors, body)
    return errors


def parse_event(kind: str, content_type: str | None, raw: bytes | None) -> tuple[Any, list[str]]:
    """Decode and validate an event request body.

    kind is "alert" or "change"; raw is None when the body exceeded the size limit.
    Returns (decoded JSON or None, list of every error found).
    """
    errors: list[str] = []
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        errors.append("Content-Type must be application/json, got "
                      + (json.dumps(content_type) if content_type else "none"))
    if raw is None:
        errors.append(TOO_LARGE_ERROR)
        return None, errors
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=reject_constant)
    except UnicodeDecodeError as exc:
        errors.append(f"body is not valid UTF-8: {exc}")
        return None, errors
    except ValueError as exc:
        errors.append(f"body is not valid JSON: {exc}")
        return None, errors
    if not isinstance(body, dict):
        errors.append(f"body must be a JSON object, got {json_type(body)}")
    else:
        errors += validate_alert(body) if kind == "alert" else validate_change(body)
    return body, errors


def reject_constant(name: str) -> None:
    """json.loads hook: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


# --------------------------------------------------------------------------- fault rules

def validate_rule(rule: Any, index: int) -> list[str]:
    """Errors in one fault-injection rule as given to PUT /_control/rules."""
    where = f"rules[{index}]"
    if not isinstance(rule, dict):
        return [f"{where} must be an object"]
    errors = [f"{where}: unknown field {key} (allowed: {', '.join(RULE_FIELDS)})"
              for key in rule if key not in RULE_FIELDS]
    action = rule.get("action")
    if action not in RULE_ACTIONS:
        errors.append(f"{where}.action must be one of {', '.join(RULE_ACTIONS)}")
    for key in ("routing_key", "path", "retry_after"):
        if key in rule and not isinstance(rule[key], str):
            errors.append(f"{where}.{key} must be a string")
    if "status" in rule:
        status = rule["status"]
        if action == "drop":
            errors.append(f"{where}.status is not used by drop rules")
        elif not is_int(status) or not 200 <= status <= 599:
            errors.append(f"{where}.status must be an integer from 200 to 599")
    elif action == "status":
        errors.append(f"{where}.status is required for status rules")
    for key in ("retry_after", "body"):
        if key in rule and "status" not in rule:
            errors.append(f"{where}.{key} needs a status")
    if "body" in rule and not isinstance(rule["body"], dict):
        errors.append(f"{where}.body must be an object")
    if action == "slow":
        delay = rule.get("delay")
        if is_int(delay) or isinstance(delay, float):
            if delay < 0:
                errors.append(f"{where}.delay must not be negative")
        else:
            errors.append(f"{where}.delay (seconds) is required for slow rules")
    elif "delay" in rule:
        errors.append(f"{where}.delay is only used by slow rules")
    if "times" in rule and not (is_int(rule["times"]) and rule["times"] >= 0):
        errors.append(f"{where}.times must be a non-negative integer")
    return errors


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def default_reply(status: int) -> dict:
    """The body PagerDuty would send with status, for rules that give none."""
    if status == 429:
        return {"status": "throttle event",
                "message": "Requests for this service are arriving too quickly. "
                           "Please retry later."}
    if status >= 500:
        return {"status": "error", "message": "internal error"}
    if status == 400:
        return invalid_event_reply(["injected failure"])
    return {"status": "injected", "message": f"injected status {status}"}


def invalid_event_reply(errors: list[str]) -> dict:
    return {"status": "invalid event", "message": "Event object is invalid", "errors": errors}


# --------------------------------------------------------------------------- HTTP

class ClientGone(ConnectionError):
    """The client closed the connection before sending the whole request."""


class BadFraming(Exception):
    """The request body framing (Content-Length / chunked encoding) is malformed."""


class EventsApiServer(ThreadingHTTPServer):
    """Threaded HTTP server holding the shared state: fault rules and recorded requests.

    All state is guarded by self.lock; methods documented "lock held" expect the caller
    to hold it.
    """

    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], log_file: TextIO | None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.lock = threading.Lock()
        self.rules: list[dict] = []
        self.records: list[dict] = []
        self.seq = 0
        self.log_file = log_file

    def server_bind(self) -> None:
        # HTTPServer.server_bind also looks up the host's FQDN, which can stall on a
        # badly configured resolver; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def fire_rule(self, path: str, routing_key: str | None) -> dict | None:
        """The first matching rule with uses left, its use counted (lock held)."""
        for rule in self.rules:
            times = rule.get("times")
            if times == 0:
                continue
            if "routing_key" in rule and rule["routing_key"] != routing_key:
                continue
            if "path" in rule and rule["path"] not in path:
                continue
            if times is not None:
                rule["times"] = times - 1
            return rule
        return None

    def add_record(self, fields: dict) -> None:
        """Number and store one event request, and log it if asked to (lock held)."""
        self.seq += 1
        record = {"seq": self.seq, **fields}
        self.records.append(record)
        if self.log_file:
            self.log_file.write(json.dumps(record) + "\n")
            self.log_file.flush()

    def close_log(self) -> None:
        with self.lock:
            if self.log_file:
                self.log_file.close()
                self.log_file = None


class Handler(BaseHTTPRequestHandler):
    """Routes requests: event endpoints, /_control, or 404.

    Control API (JSON in and out):
      GET    /_control/health              -> 200 {"ok": true}
      GET    /_control/rules               -> 200 {"rules": [rule, with times left...]}
      PUT    /_control/rules {"rules": []} -> 200 {"ok": true, "rules": n}
                                              or 400 {"ok": false, "errors": [...]}
      DELETE /_control/rules               -> 200 {"ok": true}
      GET    /_control/requests[?since=N]  -> 200 [record, ...] (only seq > N)
      DELETE /_control/requests            -> 200 {"ok": true} (seq keeps counting)
      GET    /_control/stats               -> 200 {"requests": n, "by_status": {"202": n}}
    Stats cover the requests currently recorded (DELETE /_control/requests resets them).
    """

    protocol_version = "HTTP/1.1"
    server_version = "pagerduty-events-standin/1.0"
    disable_nagle_algorithm = True
    # Buffer the output so each response's headers and body leave in one write; every
    # response ends with an explicit flush (see send_json).
    wbufsize = -1
    server: EventsApiServer

    def log_message(self, format: str, *args: Any) -> None:
        """No per-request logging on stderr (the recording is the log)."""

    def handle_expect_100(self) -> bool:
        # The "100 Continue" must reach the client before we block reading the body.
        answered = super().handle_expect_100()
        self.wfile.flush()
        return answered

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError:  # reset by the client, or ClientGone: nobody to answer
            pass

    def do_GET(self) -> None:
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_GET

    # -- plumbing

    def dispatch(self) -> None:
        path, _, query = self.path.partition("?")
        kind = event_kind(path)
        try:
            raw, size = self.read_body(MAX_EVENT_BYTES if kind else MAX_CONTROL_BYTES)
        except BadFraming as exc:
            self.close_connection = True
            self.send_json(400, {"status": "bad request", "message": str(exc)})
            return
        if path == "/_control" or path.startswith("/_control/"):
            self.control(path, query, raw)
        elif kind is None:
            self.send_json(404, {"status": "not found", "message": f"no endpoint at {path}"})
        elif self.command != "POST":
            self.send_json(405, {"status": "method not allowed", "message": "use POST"},
                           {"Allow": "POST"})
        else:
            self.event(kind, raw, size)

    def read_body(self, limit: int) -> tuple[bytes | None, int]:
        """Read the whole request body; return (body, size in bytes).

        A body over limit is read and thrown away (so the connection stays usable) and
        returned as None.  Supports Content-Length and chunked transfer encoding.
        """
        # Clients that write the headers and the body separately without TCP_NODELAY
        # (Perl's HTTP::Tiny) hold the body back until the headers are acknowledged;
        # acknowledge at once instead of after the kernel's delayed-ACK timer (~40 ms).
        if hasattr(socket, "TCP_QUICKACK"):  # Linux only
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            if encoding.strip().lower() != "chunked":
                raise BadFraming(f"unsupported Transfer-Encoding {encoding!r}")
            return self.read_chunked(limit)
        length = self.headers.get("Content-Length", "0").strip()
        if not (length.isascii() and length.isdigit()):
            raise BadFraming(f"invalid Content-Length {length!r}")
        size = int(length)
        if size <= limit:
            return self.read_exactly(size), size
        remaining = size
        while remaining:
            remaining -= len(self.read_exactly(min(remaining, 65536)))
        return None, size

    def read_exactly(self, size: int) -> bytes:
        data = self.rfile.read(size)
        if len(data) != size:
            raise ClientGone()
        return data

    def read_line(self) -> bytes:
        line = self.rfile.readline(65537)
        if not line.endswith(b"\n"):
            raise ClientGone() if len(line) < 65537 else BadFraming("chunk line too long")
        return line

    def read_chunked(self, limit: int) -> tuple[bytes | None, int]:
        parts: list[bytes] | None = []
        size = 0
        while True:
            size_field = self.read_line().split(b";", 1)[0].strip()
            if not CHUNK_SIZE_RE.fullmatch(size_field):
                raise BadFraming("invalid chunk size")
            chunk_size = int(size_field, 16)
            if chunk_size == 0:
                break
            chunk = self.read_exactly(chunk_size)
            if self.read_line().strip():
                raise BadFraming("chunk not followed by CRLF")
            size += chunk_size
            if size > limit:
                parts = None
            elif parts is not None:
                parts.append(chunk)
        while self.read_line().strip():  # skip any trailer fields
            pass
        return (b"".join(parts) if parts is not None else None), size

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        """Send a complete JSON response (no body for 204/304)."""
        body = b"" if status in (204, 304) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def drop(self) -> None:
        """Close the connection without answering."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- event endpoints

    def event(self, kind: str, raw: bytes | None, size: int) -> None:
        arrived = time.time()
        body, errors = parse_event(kind, self.headers.get("Content-Type"), raw)
        fields = body if isinstance(body, dict) else {}
        routing_key = string_or_none(fields.get("routing_key"))
        dedup_key = string_or_none(fields.get("dedup_key"))
        event_action = "change" if kind == "change" else string_or_none(fields.get("event_action"))
        headers: dict[str, str] = {}
        reply: dict | None = None

        with self.server.lock:
            rule = self.server.fire_rule(self.path, routing_key)
            action = rule["action"] if rule else None
            if action == "drop":
                status = 0
            elif rule and "status" in rule:
                status = rule["status"]
                reply = rule["body"] if "body" in rule else default_reply(status)
                if "retry_after" in rule:
                    headers["Retry-After"] = rule["retry_after"]
            elif errors:
                status, reply = 400, invalid_event_reply(errors)
            elif kind == "change":
                status, reply = 202, {"status": "success", "message": "Change event processed"}
            else:
                dedup_key = dedup_key or uuid.uuid4().hex
                status, reply = 202, {"status": "success", "message": "Event processed",
                                      "dedup_key": dedup_key}
            self.server.add_record({
                "t": arrived, "path": self.path, "routing_key": routing_key,
                "event_action": event_action, "dedup_key": dedup_key, "body": body,
                "raw_size": size, "status": status, "errors": errors, "action": action,
            })
            delay = rule["delay"] if action == "slow" else 0

        if delay:
            time.sleep(delay)
        if action == "drop":
            self.drop()
        else:
            self.send_json(status, reply, headers)

    # -- control API

    def control(self, path: str, query: str, raw: bytes | None) -> None:
        server = self.server
        route = (self.command, path)
        if route == ("GET", "/_control/health"):
            self.send_json(200, {"ok": True})
        elif route == ("GET", "/_control/rules"):
            with server.lock:
                rules = [dict(rule) for rule in server.rules]
            self.send_json(200, {"rules": rules})
        elif route == ("PUT", "/_control/rules"):
            self.put_rules(raw)
        elif route == ("DELETE", "/_control/rules"):
            with server.lock:
                server.rules = []
            self.send_json(200, {"ok": True})
        elif route == ("GET", "/_control/requests"):
            self.get_requests(query)
        elif route == ("DELETE", "/_control/requests"):
            with server.lock:
                server.records = []
            self.send_json(200, {"ok": True})
        elif route == ("GET", "/_control/stats"):
            with server.lock:
                statuses = [record["status"] for record in server.records]
            by_status: dict[str, int] = {}
            for status in statuses:
                by_status[str(status)] = by_status.get(str(status), 0) + 1
            self.send_json(200, {"requests": len(statuses), "by_status": by_status})
        elif path in CONTROL_PATHS:
            self.send_json(405, {"ok": False, "errors": [f"{self.command} not allowed on {path}"]},
                           {"Allow": CONTROL_PATHS[path]})
        else:
            self.send_json(404, {"ok": False, "errors": [f"no control endpoint {path}"]})

    def put_rules(self, raw: bytes | None) -> None:
        if raw is None:
            self.send_json(413, {"ok": False, "errors": ["body too large"]})
            return
        try:
            request = json.loads(raw)
        except ValueError as exc:
            self.send_json(400, {"ok": False, "errors": [f"body is not valid JSON: {exc}"]})
            return
        if not (isinstance(request, dict) and isinstance(request.get("rules"), list)):
            self.send_json(400, {"ok": False, "errors": ['body must be {"rules": [...]}']})
            return
        rules = request["rules"]
        errors = [error for index, rule in enumerate(rules) for error in validate_rule(rule, index)]
        if errors:
            self.send_json(400, {"ok": False, "errors": errors})
            return
        with self.server.lock:
            self.server.rules = rules
        self.send_json(200, {"ok": True, "rules": len(rules)})

    def get_requests(self, query: str) -> None:
        since_values = parse_qs(query).get("since", ["0"])
        try:
            since = int(since_values[-1])
        except ValueError:
            self.send_json(400, {"ok": False, "errors": ["since must be an integer"]})
            return
        with self.server.lock:
            records = self.server.records
            # Records are in seq order, so the ones after `since` are a tail slice.
            start = bisect.bisect_right(records, since, key=lambda record: record["seq"])
            selected = records[start:]
        self.send_json(200, selected)


CONTROL_PATHS = {
    "/_control/health": "GET",
    "/_control/rules": "GET, PUT, DELETE",
    "/_control/requests": "GET, DELETE",
    "/_control/stats": "GET",
}


def event_kind(path: str) -> str | None:
    """Classify a request path: "change", "alert", or None if it is no event endpoint."""
    if path.endswith("/change/enqueue"):
        return "change"
    if path.endswith("/enqueue"):
        return "alert"
    return None


def string_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# --------------------------------------------------------------------------- main

def write_port_file(path: str, port: int) -> None:
    """Write the port atomically, so a reader never sees a partial file."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="ascii") as handle:
        handle.write(f"{port}\n")
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="PagerDuty Events API v2 stand-in for tests")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=0, help="port (0 = any free port)")
    parser.add_argument("--port-file", help="write the chosen port to this file")
    parser.add_argument("--log", help="append each recorded request to this file as JSON lines")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    log_file = open(args.log, "a", encoding="utf-8") if args.log else None
    server = EventsApiServer((args.host, args.port), log_file)
    port = server.server_address[1]
    if args.port_file:
        write_port_file(args.port_file, port)
    print(f"listening on {port}", flush=True)

    threading.Thread(target=server.serve_forever, args=(0.1,), name="serve",
                     daemon=True).start()
    stop.wait()
    server.shutdown()
    server.server_close()
    server.close_log()
    return 0


if __name__ == "__main__":
    sys.exit(main())
