#!/usr/bin/python3
"""A Customer.io Track API simulator for suppressd's system tests (stdlib only).

It behaves like the documented API (see /work/shared/reference/customerio.md, sections
1-4). It is not a catch-all mock: it authenticates, validates limits, answers with the
bodies and headers that the real service sends, applies partial batches, and dedupes
events by id. Tests can also program faults into it.

Use it in-process:

    sim = CioSim(site_id="site", api_key="key").start()
    ...  # point suppressd at sim.url
    assert sim.last_identify("u1") == {"has_open_ticket": True}
    sim.fail_next(2, status=429)
    sim.stop()

or as a separate process, for benchmarks:

    python3 cio_sim.py --port 8089 --site-id S --api-key K
    (faults and state through /_control/..., see CONTROL API below)

WIRE BEHAVIOUR (what the real Track API does, and the choices made where it is silent)
-------------------------------------------------------------------------------------
Success           200, body "{}\\n" (3 bytes, like the live node-client fixtures),
                  content-type "application/json; charset=utf-8",
                  cache-control "no-cache, no-store, must-revalidate, max-age=0",
                  via "1.1 google", access-control-allow-origin "*".
401               body exactly '{\\n  "meta": {\\n    "error": "Unauthorized request"\\n  }\\n}\\n'.
                  Basic auth "site_id:api_key"; standard and URL-safe base64 both work
                  (the Go client sends URL-safe base64).
v1 400            {"meta":{"errors":[...]}} pretty-printed with 2 spaces and a trailing
                  newline (Go MarshalIndent style, with < > & escaped as \\u003c etc).
v2 400/207        {"errors":[{"batch_index":i,"reason":..,"field":..,"message":..}]} in
                  the same pretty style. 207 = at least one item failed; the other items
                  are applied. errors_on_200=True answers 200 with the same body (Segment
                  saw this from the live API).
Limits            id 150 bytes, attribute name 150 bytes, string value 1000 bytes, 300
                  attributes per call, event name 100 bytes (after trimming), event data
                  100000 bytes (compact JSON), v2 item 32 kb, v2 batch 500 kb.
                  The docs say "limited to requests 500kb or smaller. Each of the requests
                  within a batch must also be 32kb or smaller" without saying 1000 or 1024,
                  so the sim takes the strict reading: batch body > 500000 bytes ->
                  400 {"errors":[{"reason":"too_large","field":"","message":
                  "request body cannot be larger than 500kb"}]}; an item whose compact JSON
                  is > 32000 bytes fails with reason "too_large", field "". Both numbers are
                  constructor arguments.
Messages          Real texts are used where known: "value for attribute 'X' cannot be
                  longer than 1000 bytes", "event data must be a hash", "id attribute and
                  identifier are not the same value", "You cannot pass multiple
                  identifiers." (doc). The other messages and all v2 "reason" values
                  ("required", "invalid", "too_large", "rejected") are the sim's own.
429               No Retry-After and no X-RateLimit-* headers (none are documented); pass
                  headers= to fail_next/fail_for to add some. Default fault bodies are
                  {"meta":{"error":"<reason phrase>"}} (pretty); the real 429/5xx bodies are
                  undocumented, so clients must not depend on them.
_update:true      For an unknown person the real API creates nothing (the failure only shows
                  in the activity log). The sim records the call in `identifies` and in
                  `update_misses`; it creates the profile only when create_on_update=True.
                  create_on_update DEFAULTS TO TRUE for test convenience; pass
                  create_on_update=False to get the real behaviour.
Events            `id` dedupes workspace-wide: a repeated id answers 200 but is recorded once
                  (event_duplicates += 1). Any string id is accepted (the real API accepted a
                  non-ULID id, activepieces #6391); ids that are not ULIDs are counted in
                  `non_ulid_event_ids`; strict_ulid=True makes them a 400/item error instead.
                  Events do not create profiles in `profiles` (the reference does not say
                  whether they do).
Not modelled      identity merging (email/id/cio_id of one person are separate keys),
                  _timestamp ordering (profiles are last-write-wins in arrival order; the
                  control keys _update and _timestamp are not stored in profiles), nested
                  attribute values (rejected as the brief and the spec's "string, integer, or
                  boolean" say; allow_nested=True lets them through), anonymous events,
                  suppress/merge endpoints. v2 ops for "object"/"delivery" types and
                  relationship/device/merge/suppress actions are accepted and kept in
                  `unhandled_ops` without effect; "delete" removes the profile.

CONTROL API (no auth; JSON bodies; answers {"ok":true} unless said otherwise)
----------------------------------------------------------------------------
POST /_control/reset                                       back to the state at start
POST /_control/fail_next   {"n","status"=429,"body","headers"}
POST /_control/fail_for    {"seconds","status"=503,"body","headers"}
POST /_control/delay_next  {"n","seconds","process_first"=true}
POST /_control/drop_next   {"n","reset"=false}
POST /_control/hold_next   {"n"}
POST /_control/reject      {"identifier","status"=400,"message"}
POST /_control/unreject    {"identifier"}
POST /_control/credentials {"site_id","api_key"}
POST /_control/rate_limit  {"max_requests","per_seconds"=1.0}   (max_requests null = off)
POST /_control/options     {"create_on_update","errors_on_200","strict_ulid","allow_nested"}
GET  /_control/summary  -> {"requests","identifies","events","event_duplicates","profiles",
                            "request_times","statuses","update_misses"}
GET  /_control/state    -> {"identifies":[[id,attrs,wall]],"events":[[id,event]],
                            "profiles","event_duplicates","update_misses"}
GET  /_control/requests -> [{"time","wall","method","path","headers","body"(text),
                             "status","fault"}]
"""
import argparse
import base64
import collections
import hmac
import json
import re
import select
import socket
import sys
import time
import urllib.parse

import sim_http
from sim_http import compact, is_int, parse_json

JSON_CT = "application/json; charset=utf-8"
OK_BODY = b"{}\n"
UNAUTHORIZED_BODY = b'{\n  "meta": {\n    "error": "Unauthorized request"\n  }\n}\n'
REGION_BODY = {"url": "https://track.customer.io", "region": "us", "environment_id": 3}

MAX_ID_BYTES = 150
MAX_ATTR_NAME_BYTES = 150
MAX_ATTR_VALUE_BYTES = 1000
MAX_ATTRIBUTES = 300
MAX_EVENT_NAME_BYTES = 100
MAX_EVENT_DATA_BYTES = 100000
BATCH_MAX_BYTES = 500000   # "500kb", strict (decimal) reading
ITEM_MAX_BYTES = 32000     # "32kb", strict (decimal) reading

CONTROL_KEYS = ("_update", "_timestamp")
NESTED_OK = ("cio_subscription_preferences", "cio_relationships")
EVENT_TYPES = ("event", "page", "screen")
V2_TYPES = ("person", "object", "delivery")
V2_ACTIONS = ("identify", "delete", "event", "screen", "page", "add_relationships",
              "delete_relationships", "add_device", "delete_device", "merge", "suppress",
              "unsuppress")
V2_IDENTIFIERS = ("id", "email", "cio_id", "phone")
ULID_RE = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")


# --------------------------------------------------------------------------- helpers

def pretty(obj):
    """Go json.MarshalIndent(obj, "", "  ") + "\\n", with Go's HTML escaping."""
    s = json.dumps(obj, indent=2, ensure_ascii=False)
    s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return (s + "\n").encode()


def nbytes(s):
    return len(s.encode("utf-8", "surrogatepass"))


def v1_errors(*messages):
    return pretty({"meta": {"errors": list(messages)}})


def fault_body(status):
    return pretty({"meta": {"error": sim_http.status_phrase(status)}})


def body_bytes(body, status):
    return sim_http.body_bytes(body, status, fault_body, pretty)


class _Answer(sim_http.Answer):
    __slots__ = ()

    def __init__(self, status, body=OK_BODY, headers=None):
        super().__init__(status, body, headers)


# --------------------------------------------------------------------------- server

class _Handler(sim_http.Handler):
    server_version = "cio-sim"
    log_name = "cio_sim"

    def _bad_body_answer(self):
        return _Answer(400, pretty({"meta": {"error": "bad request body"}}))

    def _header_items(self, ans):
        # The real API's headers on every answer; a fault's own headers replace them.
        hdrs = {"Content-Type": JSON_CT,
                "Cache-Control": "no-cache, no-store, must-revalidate, max-age=0",
                "Access-Control-Allow-Origin": "*",
                "Via": "1.1 google"}
        hdrs.update(ans.headers)
        return hdrs.items()


# --------------------------------------------------------------------------- simulator

class CioSim(sim_http.Simulator):
    """Customer.io Track API simulator. See the module docstring for the behaviour."""

    handler_class = _Handler

    def __init__(self, port=None, site_id="site", api_key="key", host="127.0.0.1",
                 create_on_update=True, errors_on_200=False, strict_ulid=False,
                 allow_nested=False, batch_max_bytes=BATCH_MAX_BYTES,
                 item_max_bytes=ITEM_MAX_BYTES, verbose=False):
        super().__init__(host, port, verbose)
        self.batch_max_bytes = batch_max_bytes
        self.item_max_bytes = item_max_bytes
        self._initial = dict(site_id=site_id, api_key=api_key,
                             create_on_update=create_on_update, errors_on_200=errors_on_200,
                             strict_ulid=strict_ulid, allow_nested=allow_nested)
        # records (lists/dicts are cleared in place by reset())
        self.identifies = []
        self.events = []
        self.profiles = {}
        self.update_misses = []
        self.deletes = []
        self.unhandled_ops = []
        self.non_ulid_event_ids = []
        self.event_duplicates = 0
        self._event_ids = set()
        self._reset_config()

    def _reset_config(self):
        i = self._initial
        self.site_id = i["site_id"]
        self.api_key = i["api_key"]
        self.create_on_update = i["create_on_update"]
        self.errors_on_200 = i["errors_on_200"]
        self.strict_ulid = i["strict_ulid"]
        self.allow_nested = i["allow_nested"]
        self._fail_queue = collections.deque()    # _Answer per request
        self._fail_until = 0.0
        self._fail_for_answer = None
        self._delay_queue = collections.deque()   # (seconds, process_first)
        self._drop_queue = collections.deque()    # reset flag
        self._hold = 0                            # requests to hold unanswered
        self._rejected = {}                       # identifier -> (status, message)
        self._rate = None                         # (max_requests, per_seconds)
        self._rate_times = collections.deque()

    # ---------------------------------------------------------------- controls

    def reset(self):
        """Forgets everything received and every programmed fault; restores the
        credentials and options given to the constructor."""
        with self._lock:
            self.requests.clear()
            self.identifies.clear()
            self.events.clear()
            self.profiles.clear()
            self.update_misses.clear()
            self.deletes.clear()
            self.unhandled_ops.clear()
            self.non_ulid_event_ids.clear()
            self.event_duplicates = 0
            self._event_ids.clear()
            self._reset_config()

    def fail_next(self, n, status=429, body=None, headers=None):
        """The next n API requests get this answer instead of being processed."""
        ans = _Answer(status, body_bytes(body, status), dict(headers or {}))
        with self._lock:
            self._fail_queue.extend([ans] * n)

    def fail_for(self, seconds, status=503, body=None, headers=None):
        """An outage: every API request gets this answer for `seconds` from now."""
        with self._lock:
            self._fail_until = time.monotonic() + seconds
            self._fail_for_answer = _Answer(status, body_bytes(body, status),
                                            dict(headers or {}))

    def delay_next(self, n, seconds, process_first=True):
        """The next n API requests are answered `seconds` late. With process_first the
        request is applied at arrival and only the answer is late (a client that times
        out has still changed the state); otherwise it is applied after the sleep."""
        with self._lock:
            self._delay_queue.extend([(seconds, process_first)] * n)

    def drop_connection_next(self, n, reset=False):
        """The next n API requests are read and then the connection is closed without an
        answer (FIN, or RST with reset=True): a network error for the client."""
        with self._lock:
            self._drop_queue.extend([reset] * n)

    def hold_next(self, n):
        """The next n API requests are read and then neither processed nor answered: the
        connection is held until the client closes it (or stop()), then closed. A request
        in flight when the client dies (rec["fault"] == "hold")."""
        with self._lock:
            self._hold += n

    def held(self):
        """The requests currently or formerly held by hold_next."""
        with self._lock:
            return [r for r in self.requests if r["fault"] == "hold"]

    def reject_identifier(self, identifier, status=400, message=None):
        """Every operation about `identifier` fails: v1 gets `status` with a meta.errors
        body, a v2 batch item gets a per-item error (207)."""
        with self._lock:
            self._rejected[str(identifier)] = (
                status, message or f"identifier '{identifier}' rejected by cio_sim")

    def unreject_identifier(self, identifier):
        with self._lock:
            self._rejected.pop(str(identifier), None)

    def set_credentials(self, site_id, api_key):
        with self._lock:
            self.site_id, self.api_key = site_id, api_key

    def set_rate_limit(self, max_requests, per_seconds=1.0):
        """Answers 429 (no headers) to requests beyond max_requests in any sliding window
        of per_seconds. None turns it off (the default: the real limit is soft)."""
        with self._lock:
            self._rate = None if max_requests is None else (int(max_requests),
                                                            float(per_seconds))
            self._rate_times.clear()

    def set_options(self, create_on_update=None, errors_on_200=None, strict_ulid=None,
                    allow_nested=None):
        with self._lock:
            for k, v in (("create_on_update", create_on_update),
                         ("errors_on_200", errors_on_200), ("strict_ulid", strict_ulid),
                         ("allow_nested", allow_nested)):
                if v is not None:
                    setattr(self, k, bool(v))

    # ---------------------------------------------------------------- queries

    def last_identify(self, identifier):
        """The attributes of the last identify call for `identifier` (v1 or v2), or None."""
        with self._lock:
            for ident, attrs, _ in reversed(self.identifies):
                if ident == identifier:
                    return dict(attrs)
        return None

    def profile(self, identifier):
        with self._lock:
            p = self.profiles.get(identifier)
            return None if p is None else dict(p)

    def events_for(self, identifier):
        with self._lock:
            return [dict(e) for i, e in self.events if i == identifier]

    def max_requests_in_window(self, window=1.0):
        """The largest number of API requests that arrived within any `window` seconds."""
        return sim_http.max_in_window(self.request_times(monotonic=True), window)

    def statuses(self):
        with self._lock:
            return [r["status"] for r in self.requests]

    def summary(self):
        with self._lock:
            counts = collections.Counter(str(r["status"]) for r in self.requests)
            return {"requests": len(self.requests), "identifies": len(self.identifies),
                    "events": len(self.events), "event_duplicates": self.event_duplicates,
                    "profiles": {k: dict(v) for k, v in self.profiles.items()},
                    "request_times": [r["wall"] for r in self.requests],
                    "statuses": dict(counts), "update_misses": list(self.update_misses)}

    def snapshot(self):
        with self._lock:
            return {"identifies": [[i, dict(a), t] for i, a, t in self.identifies],
                    "events": [[i, dict(e)] for i, e in self.events],
                    "profiles": {k: dict(v) for k, v in self.profiles.items()},
                    "event_duplicates": self.event_duplicates,
                    "update_misses": list(self.update_misses)}

    # ---------------------------------------------------------------- request flow

    def _serve_api(self, h, body):
        rec = self._new_record(h, body)
        with self._lock:
            self.requests.append(rec)
            hold = self._hold > 0
            if hold:
                self._hold -= 1
                rec["fault"] = "hold"
        if hold:
            self._hold_until_closed(h)
            return
        with self._lock:
            if self._drop_queue:
                rec["fault"] = "drop"
                reset = self._drop_queue.popleft()
                drop = True
            else:
                drop = False
                delay, process_first = (self._delay_queue.popleft() if self._delay_queue
                                        else (0.0, True))
                rec["delay"] = delay
        if drop:
            h._drop(reset)
            return
        self._respond(h, body, rec, delay, process_first)

    def _hold_until_closed(self, h):
        """Waits until the client closed the connection (EOF or error) or stop()."""
        conn = h.connection
        while not self._stopping.is_set():
            try:
                r, _, _ = select.select([conn], [], [], 0.05)
                if r and conn.recv(1, socket.MSG_PEEK) == b"":
                    break
            except (OSError, ValueError):
                break
        h._drop(False)

    def _answer(self, h, body, rec):
        with self._lock:
            if time.monotonic() < self._fail_until:
                rec["fault"] = "fail_for"
                return self._fail_for_answer
            if self._fail_queue:
                rec["fault"] = "fail_next"
                return self._fail_queue.popleft()
            if self._rate is not None:
                limit, per = self._rate
                now = time.monotonic()
                while self._rate_times and now - self._rate_times[0] >= per:
                    self._rate_times.popleft()
                if len(self._rate_times) >= limit:
                    rec["fault"] = "rate_limit"
                    return _Answer(429, body_bytes(None, 429))
                self._rate_times.append(now)
            site, key = self.site_id, self.api_key
        if not self._authorized(h.headers.get("Authorization"), site, key):
            return _Answer(401, UNAUTHORIZED_BODY)
        try:
            return self._route(h.command, h.path, body)
        except Exception as e:  # a simulator bug: make it loud
            sys.stderr.write(f"cio_sim: internal error on {h.command} {h.path}: {e!r}\n")
            return _Answer(500, pretty({"meta": {"error": f"cio_sim internal error: {e!r}"}}))

    @staticmethod
    def _authorized(header, site, key):
        if not header:
            return False
        scheme, _, cred = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        cred = cred.strip()
        cred += "=" * (-len(cred) % 4)
        try:
            raw = base64.b64decode(cred.replace("-", "+").replace("_", "/"), validate=True)
            user, sep, pwd = raw.decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return bool(sep) and hmac.compare_digest(user.encode(), site.encode()) and \
            hmac.compare_digest(pwd.encode(), key.encode())

    def _route(self, method, path, body):
        raw_path = path.split("?", 1)[0]
        parts = raw_path.split("/")
        # ["", "api", "v1", "customers", "<id>"(, "events")]
        if len(parts) in (5, 6) and parts[1:4] == ["api", "v1", "customers"] and parts[4]:
            try:
                ident = urllib.parse.unquote_to_bytes(parts[4]).decode("utf-8")
            except UnicodeDecodeError:
                return _Answer(400, v1_errors("identifier must be valid UTF-8"))
            if len(parts) == 5 and method == "PUT":
                return self._v1_identify(ident, body)
            if len(parts) == 5 and method == "DELETE":
                return self._v1_delete(ident)
            if len(parts) == 6 and parts[5] == "events" and method == "POST":
                return self._v1_track(ident, body)
        elif raw_path == "/api/v2/batch" and method == "POST":
            return self._v2_batch(body)
        elif raw_path == "/api/v2/entity" and method == "POST":
            return self._v2_entity(body)
        elif raw_path == "/api/v1/accounts/region" and method == "GET":
            return _Answer(200, compact(REGION_BODY) + b"\n")
        return _Answer(404, pretty({"meta": {"error": "Not Found"}}))

    # ---------------------------------------------------------------- validation

    @staticmethod
    def _check_identifier(ident):
        if ident == "":
            return "identifier cannot be blank"
        if nbytes(ident) > MAX_ID_BYTES:
            return f"identifier cannot be longer than {MAX_ID_BYTES} bytes"
        return None

    def _attribute_errors(self, attrs):
        """[(field, message)] for an identify attribute object."""
        errs = []
        n = sum(1 for k in attrs if k not in CONTROL_KEYS)
        if n > MAX_ATTRIBUTES:
            errs.append(("attributes", f"cannot set more than {MAX_ATTRIBUTES} attributes "
                                       f"in one call (got {n})"))
        for name, value in attrs.items():
            if name == "":
                errs.append(("attributes", "attribute name cannot be blank"))
                continue
            if nbytes(name) > MAX_ATTR_NAME_BYTES:
                errs.append((f"attributes.{name}", f"attribute name '{name[:40]}...' cannot "
                             f"be longer than {MAX_ATTR_NAME_BYTES} bytes"))
                continue
            if name == "_update" and not isinstance(value, bool):
                errs.append((name, "_update must be a boolean"))
            elif name == "_timestamp" and not is_int(value):
                errs.append((name, "_timestamp must be an integer"))
            elif isinstance(value, str):
                if nbytes(value) > MAX_ATTR_VALUE_BYTES:
                    errs.append((f"attributes.{name}", f"value for attribute '{name}' cannot "
                                 f"be longer than {MAX_ATTR_VALUE_BYTES} bytes"))
            elif isinstance(value, (dict, list)):
                if not (self.allow_nested or name in NESTED_OK):
                    errs.append((f"attributes.{name}", f"value for attribute '{name}' must be "
                                 "a string, number, boolean or null"))
        return errs

    def _event_errors(self, ev):
        """[(field, message)] for a normalised event dict (name, data, timestamp, id)."""
        errs = []
        name = ev["name"]
        if not isinstance(name, str) or not name.strip():
            errs.append(("name", "event name is required"))
        elif nbytes(name.strip()) > MAX_EVENT_NAME_BYTES:
            errs.append(("name", f"event name cannot be longer than {MAX_EVENT_NAME_BYTES} "
                                 "bytes"))
        data = ev["data"]
        if data is not None and not isinstance(data, dict):
            errs.append((ev["data_field"], "event data must be a hash"))
        elif data and len(compact(data)) > MAX_EVENT_DATA_BYTES:
            errs.append((ev["data_field"], f"event data cannot be longer than "
                                           f"{MAX_EVENT_DATA_BYTES} bytes"))
        ts = ev["timestamp"]
        if ts is not None and not is_int(ts):
            errs.append(("timestamp", "timestamp must be an integer (unix seconds)"))
        eid = ev["id"]
        if eid is not None:
            if not isinstance(eid, str) or eid == "":
                errs.append(("id", "id must be a non-empty string (a ULID)"))
            elif self.strict_ulid and not ULID_RE.match(eid):
                errs.append(("id", "id must be a valid ULID"))
        return errs

    # ---------------------------------------------------------------- state changes

    def _apply_identify(self, ident, attrs):
        """Caller holds the lock."""
        self.identifies.append((ident, dict(attrs), time.time()))
        clean = {k: v for k, v in attrs.items() if k not in CONTROL_KEYS}
        if ident not in self.profiles and attrs.get("_update") is True:
            self.update_misses.append(ident)
            if not self.create_on_update:
                return
        self.profiles.setdefault(ident, {}).update(clean)

    def _apply_event(self, ident, ev, api):
        """Caller holds the lock."""
        eid = ev["id"]
        if eid is not None:
            if eid in self._event_ids:
                self.event_duplicates += 1
                return
            self._event_ids.add(eid)
            if not ULID_RE.match(eid):
                self.non_ulid_event_ids.append(eid)
        self.events.append((ident, {"name": ev["name"].strip(), "type": ev["type"],
                                    "data": dict(ev["data"] or {}),
                                    "timestamp": ev["timestamp"], "id": eid, "api": api,
                                    "received": time.time()}))

    # ---------------------------------------------------------------- v1

    def _v1_common(self, ident, body):
        err = self._check_identifier(ident)
        if err:
            return None, _Answer(400, v1_errors(err))
        with self._lock:
            rej = self._rejected.get(ident)
        if rej:
            return None, _Answer(rej[0], v1_errors(rej[1]))
        try:
            obj = parse_json(body)
        except ValueError:
            return None, _Answer(400, v1_errors("request body must be valid JSON"))
        if not isinstance(obj, dict):
            return None, _Answer(400, v1_errors("request body must be a JSON object"))
        return obj, None

    def _v1_identify(self, ident, body):
        attrs, ans = self._v1_common(ident, body)
        if ans:
            return ans
        errs = [m for _, m in self._attribute_errors(attrs)]
        kind = "cio_id" if ident.startswith("cio_") else "email" if "@" in ident else "id"
        if kind == "id" and "id" in attrs and attrs["id"] is not None \
                and str(attrs["id"]) != ident:
            errs.append("id attribute and identifier are not the same value")
        if errs:
            return _Answer(400, v1_errors(*errs))
        with self._lock:
            self._apply_identify(ident, attrs)
        return _Answer(200)

    def _v1_track(self, ident, body):
        obj, ans = self._v1_common(ident, body)
        if ans:
            return ans
        ev = {"name": obj.get("name"), "type": obj.get("type") or "event",
              "data": obj.get("data"), "data_field": "data",
              "timestamp": obj.get("timestamp"), "id": obj.get("id")}
        errs = [m for _, m in self._event_errors(ev)]
        if ev["type"] not in EVENT_TYPES:
            errs.append("type must be one of event, page, screen")
        if errs:
            return _Answer(400, v1_errors(*errs))
        with self._lock:
            self._apply_event(ident, ev, "v1")
        return _Answer(200)

    def _v1_delete(self, ident):
        err = self._check_identifier(ident)
        if err:
            return _Answer(400, v1_errors(err))
        with self._lock:
            rej = self._rejected.get(ident)
            if rej:
                return _Answer(rej[0], v1_errors(rej[1]))
            self.deletes.append(ident)
            self.profiles.pop(ident, None)
        return _Answer(200)

    # ---------------------------------------------------------------- v2

    @staticmethod
    def _v2_400(reason, message, field=""):
        return _Answer(400, pretty({"errors": [{"reason": reason, "field": field,
                                                "message": message}]}))

    def _v2_op(self, op):
        """Validates one v2 operation. Returns (error dict without batch_index, None) or
        (None, apply) where apply() must be called with the lock held."""
        def fail(reason, field, message):
            return {"reason": reason, "field": field, "message": message}, None

        if not isinstance(op, dict):
            return fail("invalid", "", "operation must be an object")
        if len(compact(op)) > self.item_max_bytes:
            return fail("too_large", "", "operation cannot be larger than 32kb")
        typ = op.get("type")
        if typ is None:
            return fail("required", "type", "type is required")
        if typ not in V2_TYPES:
            return fail("invalid", "type", f"unknown type {typ!r}")
        action = op.get("action")
        if action is None:
            return fail("required", "action", "action is required")
        if action not in V2_ACTIONS:
            return fail("invalid", "action", f"unknown action {action!r}")
        ts = op.get("timestamp")
        if ts is not None and not is_int(ts):
            return fail("invalid", "timestamp", "timestamp must be an integer (unix seconds)")
        if typ != "person":
            return None, lambda: self.unhandled_ops.append(op)
        ids = op.get("identifiers")
        if ids is None:
            return fail("required", "identifiers", "identifiers is required")
        if not isinstance(ids, dict) or not ids:
            return fail("invalid", "identifiers", "identifiers must be an object with one "
                                                  "of id, email, cio_id, phone")
        if len(ids) > 1:
            return fail("invalid", "identifiers", "You cannot pass multiple identifiers.")
        (idkind, idval), = ids.items()
        if idkind not in V2_IDENTIFIERS:
            return fail("invalid", f"identifiers.{idkind}", f"unknown identifier {idkind!r}")
        if is_int(idval) and idkind == "id":
            idval = str(idval)
        if not isinstance(idval, str):
            return fail("invalid", f"identifiers.{idkind}", f"{idkind} must be a string")
        err = self._check_identifier(idval)
        if err:
            return fail("invalid", f"identifiers.{idkind}", err)
        ident = "cio_" + idval if idkind == "cio_id" else idval
        with self._lock:
            rej = self._rejected.get(ident) or self._rejected.get(idval)
        if rej:
            return fail("rejected", "identifiers", rej[1])

        if action == "identify":
            attrs = op.get("attributes")
            if attrs is None:
                attrs = {}
            if not isinstance(attrs, dict):
                return fail("invalid", "attributes", "attributes must be an object")
            errs = self._attribute_errors(attrs)
            if errs:
                return fail("invalid", errs[0][0], errs[0][1])
            return None, lambda: self._apply_identify(ident, attrs)
        if action in EVENT_TYPES:
            ev = {"name": op.get("name"), "type": action, "data": op.get("attributes"),
                  "data_field": "attributes", "timestamp": ts, "id": op.get("id")}
            errs = self._event_errors(ev)
            if errs:
                reason = "required" if errs[0][1] == "event name is required" else "invalid"
                return fail(reason, errs[0][0], errs[0][1])
            return None, lambda: self._apply_event(ident, ev, "v2")
        if action == "delete":
            def delete():
                self.deletes.append(ident)
                self.profiles.pop(ident, None)
            return None, delete
        return None, lambda: self.unhandled_ops.append(op)

    def _v2_batch(self, body):
        if len(body) > self.batch_max_bytes:
            return self._v2_400("too_large", "request body cannot be larger than 500kb")
        try:
            obj = parse_json(body)
        except ValueError:
            return self._v2_400("invalid", "request body must be valid JSON")
        if not isinstance(obj, dict) or not isinstance(obj.get("batch"), list):
            return self._v2_400("invalid", "request body must be an object with a batch "
                                           "array", "batch")
        errors, applies = [], []
        for i, op in enumerate(obj["batch"]):
            err, apply = self._v2_op(op)
            if err:
                errors.append({"batch_index": i, **err})
            else:
                applies.append(apply)
        with self._lock:
            for apply in applies:
                apply()
            on200 = self.errors_on_200
        if not errors:
            return _Answer(200)
        return _Answer(200 if on200 else 207, pretty({"errors": errors}))

    def _v2_entity(self, body):
        if len(body) > self.item_max_bytes:
            return self._v2_400("too_large", "request body cannot be larger than 32kb")
        try:
            obj = parse_json(body)
        except ValueError:
            return self._v2_400("invalid", "request body must be valid JSON")
        err, apply = self._v2_op(obj)
        if err:
            return _Answer(400, pretty({"errors": [err]}))
        with self._lock:
            apply()
        return _Answer(200)

    # ---------------------------------------------------------------- HTTP control API

    def _control(self, method, path, body):
        try:
            name, args = sim_http.control_request(path, body)
        except ValueError as e:
            return _Answer(400, pretty({"error": str(e)}))
        ok = _Answer(200, compact({"ok": True}) + b"\n")
        try:
            if method == "GET" and name == "summary":
                return _Answer(200, compact(self.summary()) + b"\n")
            if method == "GET" and name == "state":
                return _Answer(200, compact(self.snapshot()) + b"\n")
            if method == "GET" and name == "requests":
                return _Answer(200, compact(self._requests_json()) + b"\n")
            if method != "POST":
                return _Answer(404, pretty({"error": f"no control {method} {name}"}))
            if name == "reset":
                self.reset()
            elif name == "fail_next":
                self.fail_next(int(args.get("n", 1)), int(args.get("status", 429)),
                               args.get("body"), args.get("headers"))
            elif name == "fail_for":
                self.fail_for(float(args["seconds"]), int(args.get("status", 503)),
                              args.get("body"), args.get("headers"))
            elif name == "delay_next":
                self.delay_next(int(args.get("n", 1)), float(args["seconds"]),
                                bool(args.get("process_first", True)))
            elif name == "hold_next":
                self.hold_next(int(args.get("n", 1)))
            elif name == "drop_next":
                self.drop_connection_next(int(args.get("n", 1)), bool(args.get("reset")))
            elif name == "reject":
                self.reject_identifier(args["identifier"], int(args.get("status", 400)),
                                       args.get("message"))
            elif name == "unreject":
                self.unreject_identifier(args["identifier"])
            elif name == "credentials":
                self.set_credentials(str(args["site_id"]), str(args["api_key"]))
            elif name == "rate_limit":
                self.set_rate_limit(args.get("max_requests"),
                                    float(args.get("per_seconds", 1.0)))
            elif name == "options":
                self.set_options(**{k: args.get(k) for k in
                                    ("create_on_update", "errors_on_200", "strict_ulid",
                                     "allow_nested")})
            else:
                return _Answer(404, pretty({"error": f"no control {name!r}"}))
        except (KeyError, TypeError, ValueError) as e:
            return _Answer(400, pretty({"error": f"bad arguments: {e!r}"}))
        return ok


# --------------------------------------------------------------------------- script

def main(argv=None):
    ap = argparse.ArgumentParser(description="Customer.io Track API simulator")
    ap.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--site-id", default="site")
    ap.add_argument("--api-key", default="key")
    ap.add_argument("--no-create-on-update", action="store_true",
                    help="real behaviour: _update:true never creates a profile")
    ap.add_argument("--errors-on-200", action="store_true",
                    help="answer 200 (not 207) to partially failed batches")
    ap.add_argument("--strict-ulid", action="store_true")
    ap.add_argument("--rate-limit", type=int, default=None,
                    help="answer 429 beyond this many requests per second")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    sim = CioSim(port=a.port, site_id=a.site_id, api_key=a.api_key, host=a.host,
                 create_on_update=not a.no_create_on_update,
                 errors_on_200=a.errors_on_200, strict_ulid=a.strict_ulid,
                 verbose=a.verbose).start()
    if a.rate_limit:
        sim.set_rate_limit(a.rate_limit)
    return sim_http.serve_until_signalled(sim, "cio_sim")


if __name__ == "__main__":
    sys.exit(main())
