#!/usr/bin/python3
"""An Intercom REST API simulator for suppressd's system tests (stdlib only).

It serves the parts of Intercom's REST API that suppressd calls: the Data Events API
(POST /events), contact look-ups (GET /contacts/{id}), conversation and ticket
re-checks (GET /conversations/{id}, GET /tickets/{id}) and the backfill searches
(POST /conversations/search, POST /tickets/search). It is not a catch-all mock: it
authenticates, validates bodies, answers with Intercom's JSON shapes, resolves users
among the contacts it knows, dedupes events, pages with opaque cursors and can enforce
Intercom's rate limit with the real headers. Tests can also program faults into it.
Facts come from /work/shared/reference/intercom.md (cited as [REF §n]), the real webhook
deliveries in /work/shared/fixtures/intercom/ and Intercom's public REST docs.

Use it in-process:

    sim = IntercomSim(token="tok").start()
    sim.add_contact("c1", external_id="u1", email="a@example.com")
    conv = sim.add_conversation("c1", state="open")
    ...  # point suppressd at sim.url (INTERCOM_API_URL)
    assert sim.events[0]["event_name"] == "email_opened"
    sim.fail_next(2, status=429)
    sim.stop()

or as a separate process, for benchmarks:

    python3 intercom_sim.py --port 8090 --token T [--seed-users N] [--rate-limit L]
    (state and faults through /_control/..., see CONTROL API below)

WIRE BEHAVIOUR ([DOC] = documented or seen in real traffic; [SIM] = this simulator's own
choice where Intercom is silent; tests must not rely on [SIM] details matching production)
-----------------------------------------------------------------------------------------
Auth        [DOC] "Authorization: Bearer <token>" on every endpoint. Anything else (no
            header, other scheme, wrong token) -> 401
            {"type":"error.list","request_id":"<id>","errors":[{"code":"unauthorized",
            "message":"Access Token Invalid"}]} [REF §6]. [SIM] the same body for a missing
            header (the real API may say "missing_authorization"); set_token(t,
            reject_status=403) answers 403 with that body instead, as the doc allows
            "401 or 403". request_id: [SIM] 20 random [a-z0-9] characters, the look of
            a real one (intercom-node #98).
Version     [DOC] "Intercom-Version" is optional; the app's version applies without it.
            [SIM] recorded (requests[i]["intercom_version"], intercom_versions), never
            validated.
Bodies      [SIM] compact JSON, content-type "application/json; charset=utf-8"; the 202 of
            /events has an empty body [DOC], Content-Length 0 and no content-type [SIM].
Errors      [DOC] every error is {"type":"error.list","request_id",...,"errors":[{"code",
            "message"(,"field")}]}; codes from Intercom's error-code table:
            parameter_not_found, parameter_invalid, type_mismatch, not_found, unauthorized,
            rate_limit_exceeded, server_error, service_unavailable. [SIM] which code and
            which message each validation failure gets (the texts are the sim's), and that
            all validation errors of one body are listed together.
POST /events
            [DOC] 202, empty body. event_name and created_at (integer unix seconds) are
            required; one of user_id / id / email names the user. [SIM] the strict reading:
            a missing or non-string event_name, a missing or non-integer created_at (1.5,
            "1700000000", true) and zero or several identifiers are 400s.
            Users: [DOC] "Events sent about users that cannot be found will return a 404".
            [SIM] user_id matches a contact's external_id and email a contact's email, both
            among role "user" contacts only (the doc: "When submitting events for Leads,
            you will need to specify the Lead's id"); id matches any contact id. Unknown ->
            404 {"code":"not_found","message":"User Not Found"} (that text was seen from the
            live API, airbyte #36277).
            Metadata: [DOC] a flat object ("we do not currently support nested JSON
            structure"); values are strings, numbers, dates (unix seconds), links, rich
            links {"url","value"} and money {"amount","currency"}. [SIM] those two object
            shapes pass; any other object or array value, or a non-object metadata, is 400
            parameter_invalid with a message naming the key. Booleans and null pass [SIM].
            [DOC] at most 10 keys are tracked, "the first 10 ... by the order in which they
            are sent", further keys are ignored (the Help Center says 20): the sim answers
            202, keeps the first metadata_limit (10) keys in `metadata` and lists the rest in
            `dropped_metadata_keys`. [DOC, Help Center] strings of at most 255 characters:
            [SIM] longer ones are accepted unchanged and listed in `long_metadata_keys`.
            Dedupe: [DOC] an event is identified by (workspace, contact, event_name,
            created_at); a repeat answers the normal 202 and still counts against the rate
            limit. [SIM] the contact is the resolved contact id, so user_id and id naming
            the same contact dedupe together. Repeats go to `duplicates` /
            `event_duplicates`, not to `events`.
GET /contacts/{id}
            [DOC] 200 with the contact object: type "contact", id, external_id, email, role
            "user"|"lead", ... (fields of the real contact.user.created delivery; the REST
            API gives created_at/updated_at as unix integers [DOC OAS], where webhooks carry
            ISO strings). Unknown or deleted -> 404 not_found "User Not Found" [SIM text].
            Every call counts in `lookups[id]`, found or not.
GET /conversations/{id}, GET /tickets/{id}
            [DOC] the 2.x object (see below), with conversation_parts / ticket_parts (empty
            lists [SIM]). Unknown or deleted -> 404 {"code":"not_found","message":"Resource
            Not Found"} (text seen live, intercom-node #98). [DOC?] Intercom's OpenAPI
            NotFoundErrorBody example for tickets shows code "ticket_not_found" / "Ticket
            not found"; clients should key on the status, not on the code. Counted in
            `conversation_gets` / `ticket_gets`.
POST /conversations/search, POST /tickets/search
            [DOC] body {"query": Q, "pagination": {"per_page": N, "starting_after": C}}.
            Q is a filter {"field","operator","value"} or a group {"operator":"AND"|"OR",
            "value":[Q,...]}; "max 2 nested filters" and "max 15 filters for each AND or OR
            group" -> 400 beyond [SIM code]. Operators [DOC]: "=", "!=", "IN", "NIN" (value
            an array), ">" and "<" (documented as "greater (or equal)" / "lower (or equal)",
            so inclusive here). [SIM] supported fields: conversations state (open, closed,
            snoozed), open, priority, id, created_at, updated_at, contact_ids; tickets state
            (the ticket-state category: submitted, in_progress, waiting_on_customer,
            resolved), open, category, id, created_at, updated_at, contact_ids. Any other
            field, operator, enum value or value type is a 400 (the real API accepts many
            more fields; the sim refuses them so that a typo cannot pass silently).
            Answer [DOC]: {"type":"conversation.list"|"ticket.list","conversations"|"tickets":
            [...],"total_count":N,"pages":{"type":"pages","page":k,"next":{"page":k+1,
            "starting_after":"<cursor>"},"per_page":N,"total_pages":T}}, "next" absent on the
            last page. per_page [DOC] defaults to 20, at most 150; [SIM] 0, >150 or a non-
            integer is 400 parameter_invalid.
            Order and cursors [SIM]: results are sorted by (created_at, id) ascending, a key
            that never changes, and the cursor is base64 of a JSON array (so it starts with
            "Wz" like Intercom's [DOC look]) holding the last key served, the next page
            number and the kind. It is keyset paging: a client that saves starting_after and
            resumes later continues right after the last object it saw, even when objects
            were added, closed or deleted meanwhile (total_count and total_pages are
            recomputed on every page; T = ceil(N / per_page), 0 when N is 0). The same
            position always gives the same cursor string. A cursor that does not decode, or
            one from the other search, is a 400 parameter_invalid. Search results carry no
            conversation_parts / ticket_parts [SIM].
Objects     [DOC] conversation (2.x, [REF §5]): type, id (numeric string), created_at,
            updated_at, waiting_since, snoozed_until, source{author}, contacts{"type":
            "contact.list","contacts":[{"type":"contact","id","external_id"}]}, open, state,
            read, tags, priority, conversation_rating, statistics, teammates, ...; "snoozed"
            has open true (fixture conversation_admin_snoozed). Ticket (fixture
            ticket_created): type "ticket", id, ticket_id, ticket_state{"type":"ticket_state",
            "id","category","internal_label","external_label"}, ticket_type, contacts, open,
            admin_assignee_id "0", created_at, updated_at, category "Customer", ...
            [SIM] open is false exactly when the category is "resolved" (unless given); ids
            count up from 215472621200001 (conversations) and 215472629300001 (tickets);
            state changes through the controls set updated_at to max(now, previous + 1).
            Contact references for contacts the sim does not know get external_id null;
            pass a dict instead of an id to put any reference verbatim (e.g. the {id, role}
            entry of the real ticket.closed delivery).
Rate limit  [DOC] 429 with X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset
            (unix seconds) and code "rate_limit_exceeded"; the per-minute budget is spread
            over 10-second windows [REF §6]. Message "Exceeded rate limit of 83 in
            10_seconds" seen live (intercom-ruby #475, whose reset_at fell on a :40 second,
            hence [SIM] fixed windows aligned to multiples of window_s of the unix clock;
            Reset = the window's end, rounded up). rate_limit(L, window_s) turns it on:
            then every authorised API answer carries the three headers (Remaining counts
            down), and requests beyond L in a window get the 429 (they do not use budget).
            [SIM] off by default; 401s and injected faults are not counted.
Faults      fail_next / fail_for answer instead of processing (nothing is applied). Default
            bodies [SIM]: an error.list with the code of the status (401/403 unauthorized,
            404 not_found, 429 rate_limit_exceeded, 503 service_unavailable, other 5xx
            server_error, other 4xx bad_request). A 429 fault with headers=None gets
            X-RateLimit-Limit (the configured limit or 166), Remaining 0 and Reset = now + 1
            s rounded up [SIM: short, so tests do not sleep]; pass headers={} for a bare 429.
Not modelled: the 120 active event names limit, event summaries, EU/AU hosts, conversation
            parts, sorting parameters of the searches, Intercom-Version validation,
            contacts search, any write endpoint other than /events.

CONTROL API (no auth; JSON bodies; answers {"ok":true} unless said otherwise)
----------------------------------------------------------------------------
POST /_control/reset                                   back to the state at start (seeded
                                                       users are seeded again)
POST /_control/token        {"token","reject_status"=401}
POST /_control/contacts     {"id","external_id","email","role"="user", other fields}
                            or {"contacts":[{...},...]}       -> {"ok":true,"count":n}
POST /_control/conversations {"contact"|"contacts","state"="open","id","created_at",
                            "updated_at","priority", other fields} or {"conversations":[..]}
                                                       -> {"ok":true,"objects":[...]}
POST /_control/tickets      {"contact"|"contacts","category"="submitted","id","open",
                            "created_at","updated_at", other fields} or {"tickets":[...]}
                                                       -> {"ok":true,"objects":[...]}
POST /_control/conversation_state {"id","state","at"}  (open | snoozed | closed)
POST /_control/ticket_state {"id","category","open","at"}
POST /_control/delete       {"kind":"conversation"|"ticket"|"contact","id"}
POST /_control/fail_next    {"n"=1,"status"=429,"body","headers","path_prefix"}
POST /_control/fail_for     {"seconds","status"=503,"body","headers","path_prefix"}
POST /_control/delay_next   {"seconds","n"=1,"process_first"=true,"path_prefix"}
POST /_control/drop_next    {"n"=1,"reset"=false,"path_prefix"}
POST /_control/rate_limit   {"limit","window_s"=10}            (limit null = off)
GET  /_control/summary   -> {"requests","statuses","events","event_duplicates",
                             "rejected_events","lookups","conversation_gets","ticket_gets",
                             "search_pages","intercom_versions","request_times"}
GET  /_control/state     -> {"events","duplicates","rejected_events","lookups",
                             "search_pages","contacts","conversations","tickets"}
GET  /_control/requests  -> [{"time","wall","method","path","headers","body"(text),
                             "status","fault","intercom_version"}]
"""
import argparse
import base64
import binascii
import collections
import copy
import hmac
import json
import math
import secrets
import string
import sys
import time
import urllib.parse

import sim_http
from sim_http import compact, is_int, parse_json

JSON_CT = "application/json; charset=utf-8"

DEFAULT_PER_PAGE = 20       # [DOC]
MAX_PER_PAGE = 150          # [DOC]
METADATA_LIMIT = 10         # [DOC] "limit the number of tracked metadata keys to 10"
METADATA_STRING_CHARS = 255  # [DOC, Help Center]
MAX_GROUP_FILTERS = 15      # [DOC]
MAX_NESTING = 2             # [DOC]
DEFAULT_FAULT_LIMIT = 166   # the doc's "166 operations per 10 second period" example

CONVERSATION_STATES = ("open", "snoozed", "closed")
PRIORITIES = ("priority", "not_priority")
TICKET_CATEGORIES = ("submitted", "in_progress", "waiting_on_customer", "resolved")
TICKET_TYPE_CATEGORIES = ("Customer", "Back-office", "Tracker")
# ids 4517893 (submitted) and 4517896 (resolved) are those of the real fixtures
TICKET_STATE_IDS = {"submitted": "4517893", "in_progress": "4517894",
                    "waiting_on_customer": "4517895", "resolved": "4517896"}
TICKET_STATE_LABELS = {"submitted": "Submitted", "in_progress": "In progress",
                       "waiting_on_customer": "Waiting on customer", "resolved": "Resolved"}
CONVERSATION_ID_BASE = 215472621200000
TICKET_ID_BASE = 215472629300000
TICKET_NUMBER_BASE = 66040000
WORKSPACE_ID = "abc123def"

CODE_FOR_STATUS = {400: "bad_request", 401: "unauthorized", 403: "unauthorized",
                   404: "not_found", 429: "rate_limit_exceeded", 500: "server_error",
                   503: "service_unavailable"}
MESSAGE_FOR_CODE = {"unauthorized": "Access Token Invalid",
                    "not_found": "Resource Not Found",
                    "server_error": "Server Error",
                    "service_unavailable": "Service Unavailable",
                    "bad_request": "Bad Request"}

_RID_ALPHABET = string.ascii_lowercase + string.digits


# --------------------------------------------------------------------------- helpers

def request_id():
    return "".join(secrets.choice(_RID_ALPHABET) for _ in range(20))


def error_list(*errors):
    """errors: (code, message) or (code, message, field) tuples -> error.list dict."""
    out = []
    for e in errors:
        item = {"code": e[0], "message": e[1]}
        if len(e) > 2 and e[2] is not None:
            item["field"] = e[2]
        out.append(item)
    return {"type": "error.list", "request_id": request_id(), "errors": out}


def fault_body(status, message=None):
    code = CODE_FOR_STATUS.get(status) or ("server_error" if status >= 500 else "bad_request")
    if message is None:
        message = MESSAGE_FOR_CODE.get(code)
        if message is None:
            message = sim_http.status_phrase(status)
    return compact(error_list((code, message)))


def body_bytes(body, status):
    return sim_http.body_bytes(body, status, fault_body, compact)


def rate_message(limit, window_s):
    w = int(window_s) if float(window_s).is_integer() else window_s
    return f"Exceeded rate limit of {limit} in {w}_seconds"


class _Answer(sim_http.Answer):
    __slots__ = ("ctype",)

    def __init__(self, status, body=b"", headers=None, ctype=JSON_CT):
        super().__init__(status, body, headers)
        # An empty body (the 202 of /events) goes out without a content type.
        self.ctype = ctype if body else None


class SearchError(ValueError):
    def __init__(self, code, message, field=None):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


# --------------------------------------------------------------------------- server

class _Handler(sim_http.Handler):
    server_version = "intercom-sim"
    log_name = "intercom_sim"

    def _bad_body_answer(self):
        return _Answer(400, compact(error_list(("bad_request", "bad request body"))))

    def _header_items(self, ans):
        if ans.ctype:
            yield "Content-Type", ans.ctype
        yield from ans.headers.items()


# --------------------------------------------------------------------------- search

def _field_specs(kind):
    """field -> (type, enum or None, getter). type: "str", "int", "bool", "multi"."""
    common = {
        "id": ("str", None, lambda o: o["id"]),
        "created_at": ("int", None, lambda o: o["created_at"]),
        "updated_at": ("int", None, lambda o: o["updated_at"]),
        "open": ("bool", None, lambda o: o["open"]),
        "contact_ids": ("multi", None,
                        lambda o: [c.get("id") for c in
                                   (o.get("contacts") or {}).get("contacts") or []]),
    }
    if kind == "conversations":
        common["state"] = ("str", CONVERSATION_STATES, lambda o: o["state"])
        common["priority"] = ("str", PRIORITIES, lambda o: o.get("priority"))
    else:
        common["state"] = ("str", TICKET_CATEGORIES,
                           lambda o: (o.get("ticket_state") or {}).get("category"))
        common["category"] = ("str", TICKET_TYPE_CATEGORIES, lambda o: o.get("category"))
    return common


FIELD_SPECS = {k: _field_specs(k) for k in ("conversations", "tickets")}
LEAF_OPERATORS = ("=", "!=", "IN", "NIN", ">", "<")


def _check_value(field, typ, enum, v):
    ok = {"str": isinstance(v, str), "multi": isinstance(v, str), "int": is_int(v),
          "bool": isinstance(v, bool)}[typ]
    if not ok:
        want = {"str": "a string", "multi": "a string", "int": "an integer (unix seconds)",
                "bool": "a boolean"}[typ]
        raise SearchError("type_mismatch", f"{field} value {v!r} must be {want}", field)
    if enum is not None and v not in enum:
        raise SearchError("parameter_invalid", f"{field} value {v!r} is not one of "
                          f"{', '.join(enum)}", field)


def compile_query(kind, q, depth=0):
    """Validates a search query and returns a predicate over objects. Raises SearchError."""
    if not isinstance(q, dict):
        raise SearchError("parameter_invalid", "query must be an object", "query")
    op = q.get("operator")
    if "field" not in q:
        if op not in ("AND", "OR"):
            raise SearchError("parameter_invalid", f"query operator {op!r} needs a field, or "
                              "must be AND or OR with a list of filters", "query.operator")
        if depth >= MAX_NESTING:
            raise SearchError("parameter_invalid", f"at most {MAX_NESTING} levels of AND/OR "
                              "filters are allowed", "query")
        subs = q.get("value")
        if not isinstance(subs, list) or not subs:
            raise SearchError("parameter_invalid", f"{op} needs a non-empty list of filters "
                              "as value", "query.value")
        if len(subs) > MAX_GROUP_FILTERS:
            raise SearchError("parameter_invalid", f"at most {MAX_GROUP_FILTERS} filters are "
                              f"allowed in one {op} group", "query.value")
        preds = [compile_query(kind, s, depth + 1) for s in subs]
        if op == "AND":
            return lambda o: all(p(o) for p in preds)
        return lambda o: any(p(o) for p in preds)

    field = q["field"]
    specs = FIELD_SPECS[kind]
    if not isinstance(field, str) or field not in specs:
        raise SearchError("parameter_invalid", f"field {field!r} is not searchable in "
                          f"intercom_sim (supported: {', '.join(sorted(specs))})", "field")
    typ, enum, get = specs[field]
    if op not in LEAF_OPERATORS:
        raise SearchError("parameter_invalid", f"operator {op!r} is not supported for "
                          f"{field} (use one of {' '.join(LEAF_OPERATORS)})", "operator")
    if "value" not in q:
        raise SearchError("parameter_not_found", f"filter on {field} has no value", "value")
    val = q["value"]
    if op in ("IN", "NIN"):
        if not isinstance(val, list) or not val:
            raise SearchError("parameter_invalid", f"{op} needs a non-empty array value",
                              "value")
        for v in val:
            _check_value(field, typ, enum, v)
        vals = set(val)
        if typ == "multi":
            if op == "IN":
                return lambda o: any(x in vals for x in get(o))
            return lambda o: not any(x in vals for x in get(o))
        if op == "IN":
            return lambda o: get(o) in vals
        return lambda o: get(o) not in vals
    if isinstance(val, list):
        raise SearchError("parameter_invalid", f"operator {op} takes a single value, not an "
                          "array (use IN / NIN)", "value")
    if op in (">", "<"):
        if typ != "int":
            raise SearchError("parameter_invalid", f"operator {op} only applies to dates and "
                              f"integers, not to {field}", "operator")
        _check_value(field, typ, enum, val)
        if op == ">":
            return lambda o: get(o) is not None and get(o) >= val
        return lambda o: get(o) is not None and get(o) <= val
    _check_value(field, typ, enum, val)
    if typ == "multi":
        if op == "=":
            return lambda o: val in get(o)
        return lambda o: val not in get(o)
    if op == "=":
        return lambda o: get(o) == val
    return lambda o: get(o) != val


def _id_key(i):
    i = str(i)
    return (0, len(i), i) if i.isdigit() else (1, 0, i)


def sort_key(obj):
    return (obj.get("created_at") or 0, _id_key(obj["id"]))


def encode_cursor(kind, created_at, obj_id, next_page):
    raw = compact([created_at, str(obj_id), next_page, kind[0]])
    return base64.b64encode(raw).decode()


def decode_cursor(kind, cursor):
    """-> (sort key of the last object served, next page number). Raises SearchError."""
    bad = SearchError("parameter_invalid", "starting_after is not a valid cursor",
                      "pagination.starting_after")
    if not isinstance(cursor, str) or not cursor:
        raise bad
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), validate=True)
        created_at, obj_id, page, k = json.loads(raw.decode("utf-8"))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise bad from None
    if k != kind[0] or not is_int(created_at) or not isinstance(obj_id, str) or \
            not is_int(page) or page < 2:
        raise bad
    return (created_at, _id_key(obj_id)), page


# --------------------------------------------------------------------------- simulator

class IntercomSim(sim_http.Simulator):
    """Intercom REST API simulator. See the module docstring for the behaviour."""

    handler_class = _Handler

    def __init__(self, port=None, token="token", host="127.0.0.1",
                 metadata_limit=METADATA_LIMIT, default_per_page=DEFAULT_PER_PAGE,
                 max_per_page=MAX_PER_PAGE, seed_users=0, verbose=False):
        super().__init__(host, port, verbose)
        self.metadata_limit = metadata_limit
        self.default_per_page = default_per_page
        self.max_per_page = max_per_page
        self.seed_users = seed_users
        self._initial_token = token
        # records (cleared in place by reset())
        self.events = []               # accepted (unique) events, dicts
        self.duplicates = []           # accepted repeats of an event
        self.rejected_events = []      # {"status","errors","body"} of refused POST /events
        self.lookups = collections.Counter()            # contact id -> GET /contacts/{id}
        self.conversation_gets = collections.Counter()  # id -> GET /conversations/{id}
        self.ticket_gets = collections.Counter()        # id -> GET /tickets/{id}
        self.search_pages = []         # one dict per search page served (200 only)
        self.intercom_versions = collections.Counter()  # header value (None = absent)
        self.event_duplicates = 0
        # state
        self.contacts = {}
        self.conversations = {}
        self.tickets = {}
        self._event_keys = set()
        self._seq = 0
        self._reset_config()
        self._seed()

    def _reset_config(self):
        self.token = self._initial_token
        self.reject_status = 401
        self._fail_queue = []          # [(path_prefix, _Answer)]
        self._fail_until = 0.0
        self._fail_for = None          # (path_prefix, _Answer)
        self._delay_queue = []         # [(path_prefix, seconds, process_first)]
        self._drop_queue = []          # [(path_prefix, reset)]
        self._rate = None              # (limit, window_s)
        self._rate_window = None
        self._rate_count = 0

    def _seed(self):
        for i in range(self.seed_users):
            self.add_contact(f"c{i}", external_id=f"u{i}", email=f"u{i}@example.com")

    # ---------------------------------------------------------------- state controls

    def reset(self):
        """Forgets everything received, every object and every programmed fault; restores
        the constructor's token (and seeded users)."""
        with self._lock:
            for rec in (self.requests, self.events, self.duplicates, self.rejected_events,
                        self.search_pages):
                rec.clear()
            for c in (self.lookups, self.conversation_gets, self.ticket_gets,
                      self.intercom_versions):
                c.clear()
            self.event_duplicates = 0
            self.contacts.clear()
            self.conversations.clear()
            self.tickets.clear()
            self._event_keys.clear()
            self._seq = 0
            self._reset_config()
            self._seed()

    def set_token(self, token, reject_status=401):
        """The Bearer token the API accepts; wrong tokens get reject_status (401 or 403)."""
        with self._lock:
            self.token = token
            self.reject_status = int(reject_status)

    def add_contact(self, id=None, external_id=None, email=None, role="user", **fields):
        """Adds (or replaces) a contact. Returns the contact object."""
        if role not in ("user", "lead"):
            raise ValueError("role must be 'user' or 'lead'")
        now = int(time.time())
        with self._lock:
            if id is None:
                self._seq += 1
                id = "%024x" % (0x696205460674dbb9050a0000 + self._seq)
            id = str(id)
            c = {
                "type": "contact", "id": id, "workspace_id": WORKSPACE_ID,
                "external_id": external_id, "role": role, "email": email, "phone": None,
                "name": None, "avatar": None, "owner_id": None,
                "social_profiles": {"type": "list", "data": []},
                "has_hard_bounced": False, "marked_email_as_spam": False,
                "unsubscribed_from_emails": False, "created_at": now, "updated_at": now,
                "signed_up_at": now if role == "user" else None, "last_seen_at": None,
                "last_replied_at": None, "last_contacted_at": None,
                "last_email_opened_at": None, "last_email_clicked_at": None,
                "language_override": None, "browser": None, "browser_version": None,
                "browser_language": None, "os": None,
                "location": {"type": "location", "country": None, "region": None,
                             "city": None, "country_code": None, "continent_code": None},
                "custom_attributes": {},
                "tags": self._list_ref(id, "tags"), "notes": self._list_ref(id, "notes"),
                "companies": self._list_ref(id, "companies"),
                "opted_out_subscription_types": self._list_ref(id, "subscriptions"),
                "opted_in_subscription_types": self._list_ref(id, "subscriptions"),
                "utm_campaign": None, "utm_content": None, "utm_medium": None,
                "utm_source": None, "utm_term": None, "referrer": None,
                "sms_consent": False, "unsubscribed_from_sms": False,
                "enabled_push_messaging": None,
            }
            c.update(fields)
            self.contacts[id] = c
            return copy.deepcopy(c)

    @staticmethod
    def _list_ref(cid, what):
        return {"type": "list", "data": [], "url": f"/contacts/{cid}/{what}",
                "total_count": 0, "has_more": False}

    def delete_contact(self, id):
        with self._lock:
            return self.contacts.pop(str(id), None) is not None

    def _contact_refs(self, contacts):
        """Caller holds the lock. contacts: an id, a dict, or a list of them."""
        if contacts is None:
            contacts = []
        elif isinstance(contacts, (str, int, dict)):
            contacts = [contacts]
        refs = []
        for c in contacts:
            if isinstance(c, dict):
                refs.append(copy.deepcopy(c))
                continue
            known = self.contacts.get(str(c))
            refs.append({"type": "contact", "id": str(c),
                         "external_id": known["external_id"] if known else None})
        return {"type": "contact.list", "contacts": refs}

    def _author(self, refs):
        """Caller holds the lock."""
        first = refs["contacts"][0] if refs["contacts"] else None
        known = self.contacts.get(str(first.get("id"))) if first else None
        if first is None:
            return {"type": "admin", "id": "9608799", "name": "Sim Admin",
                    "email": "admin@example.com"}
        return {"type": known["role"] if known else "user", "id": first.get("id"),
                "name": known.get("name") if known else None,
                "email": (known.get("email") or "") if known else ""}

    def add_conversation(self, contacts=None, state="open", id=None, created_at=None,
                         updated_at=None, priority="not_priority", snoozed_until=None,
                         **fields):
        """Adds a conversation (2.x shape) and returns it. contacts: contact id(s) or
        reference dict(s). Extra keyword fields override the object's members."""
        if state not in CONVERSATION_STATES:
            raise ValueError(f"state must be one of {CONVERSATION_STATES}")
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {PRIORITIES}")
        now = int(time.time())
        with self._lock:
            self._seq += 1
            cid = str(id) if id is not None else str(CONVERSATION_ID_BASE + self._seq)
            created = now if created_at is None else int(created_at)
            refs = self._contact_refs(contacts)
            if state == "snoozed" and snoozed_until is None:
                snoozed_until = now + 3600
            conv = {
                "type": "conversation", "id": cid, "created_at": created,
                "updated_at": created if updated_at is None else int(updated_at),
                "waiting_since": None, "snoozed_until": snoozed_until,
                "source": {"type": "conversation", "id": str(3381828000 + self._seq),
                           "delivered_as": "customer_initiated", "subject": "",
                           "body": "<p>Hello</p>", "author": self._author(refs),
                           "attachments": [], "url": None, "redacted": False},
                "contacts": refs,
                "first_contact_reply": {"created_at": created, "type": "conversation",
                                        "url": None},
                "admin_assignee_id": None, "team_assignee_id": None,
                "open": state != "closed", "state": state, "read": False,
                "tags": {"type": "tag.list", "tags": []}, "priority": priority,
                "sla_applied": None,
                "statistics": {"type": "conversation_statistics", "time_to_assignment": None,
                               "time_to_admin_reply": None, "time_to_first_close": None,
                               "time_to_last_close": None, "median_time_to_reply": None,
                               "first_contact_reply_at": None, "first_close_at": None,
                               "last_close_at": None, "last_closed_by_id": None,
                               "count_reopens": 0, "count_assignments": 0,
                               "count_conversation_parts": 1, "handling_time": None},
                "conversation_rating": None,
                "teammates": {"type": "admin.list", "admins": []},
                "title": "", "custom_attributes": {},
                "topics": {"type": "topic.list", "topics": [], "total_count": 0},
                "ticket": None,
                "linked_objects": {"type": "list", "data": [], "total_count": 0,
                                   "has_more": False},
                "ai_agent": None, "ai_agent_participated": False,
            }
            conv.update(fields)
            self.conversations[cid] = conv
            return copy.deepcopy(conv)

    def add_ticket(self, contacts=None, category="submitted", id=None, created_at=None,
                   updated_at=None, open=None, title="Ticket from intercom_sim", **fields):
        """Adds a ticket (fixture ticket_created shape) and returns it. category is the
        ticket-state category; open defaults to category != "resolved"."""
        if category not in TICKET_CATEGORIES:
            raise ValueError(f"category must be one of {TICKET_CATEGORIES}")
        now = int(time.time())
        with self._lock:
            self._seq += 1
            tid = str(id) if id is not None else str(TICKET_ID_BASE + self._seq)
            created = now if created_at is None else int(created_at)
            t = {
                "type": "ticket", "id": tid, "ticket_id": str(TICKET_NUMBER_BASE + self._seq),
                "ticket_attributes": {"_default_title_": title,
                                      "_default_description_": ""},
                "ticket_state": self._ticket_state(category),
                "ticket_type": {"type": "ticket_type", "id": "2979330", "name": "Tickets",
                                "description": "", "icon": "\U0001f39f",
                                "workspace_id": WORKSPACE_ID, "archived": False,
                                "created_at": 1767066651, "updated_at": 1767066651,
                                "is_internal": False,
                                "ticket_type_attributes": {"type": "list", "data": []},
                                "category": "Customer"},
                "contacts": self._contact_refs(contacts),
                "admin_assignee_id": "0", "team_assignee_id": "0",
                "created_at": created,
                "updated_at": created if updated_at is None else int(updated_at),
                "open": category != "resolved" if open is None else bool(open),
                "snoozed_until": None,
                "linked_objects": {"type": "list", "data": [], "total_count": 0,
                                   "has_more": False},
                "category": "Customer", "is_shared": True, "company_id": None,
                "channel": "messenger",
            }
            t.update(fields)
            self.tickets[tid] = t
            return copy.deepcopy(t)

    @staticmethod
    def _ticket_state(category):
        return {"type": "ticket_state", "id": TICKET_STATE_IDS[category],
                "category": category, "internal_label": TICKET_STATE_LABELS[category],
                "external_label": TICKET_STATE_LABELS[category]}

    @staticmethod
    def _bump(obj, at):
        obj["updated_at"] = int(at) if at is not None else \
            max(int(time.time()), (obj.get("updated_at") or 0) + 1)

    def _get_obj(self, store, id, what):
        obj = store.get(str(id))
        if obj is None:
            raise KeyError(f"no {what} {id!r}")
        return obj

    def set_conversation_state(self, id, state, at=None):
        """open | snoozed | closed; updated_at moves forward. Returns the object."""
        if state not in CONVERSATION_STATES:
            raise ValueError(f"state must be one of {CONVERSATION_STATES}")
        with self._lock:
            conv = self._get_obj(self.conversations, id, "conversation")
            conv["state"] = state
            conv["open"] = state != "closed"
            conv["snoozed_until"] = (int(time.time()) + 3600) if state == "snoozed" else None
            self._bump(conv, at)
            return copy.deepcopy(conv)

    def close_conversation(self, id, at=None):
        return self.set_conversation_state(id, "closed", at)

    def update_conversation(self, id, at=None, **fields):
        """Sets any members (e.g. priority, tags, conversation_rating); bumps updated_at."""
        with self._lock:
            conv = self._get_obj(self.conversations, id, "conversation")
            conv.update(fields)
            self._bump(conv, at)
            return copy.deepcopy(conv)

    def delete_conversation(self, id):
        """Later GETs answer 404 and searches skip it."""
        with self._lock:
            return self.conversations.pop(str(id), None) is not None

    def set_ticket_state(self, id, category, open=None, at=None):
        """Moves a ticket to a state category; open follows (resolved -> false) unless
        given. Returns the object."""
        if category not in TICKET_CATEGORIES:
            raise ValueError(f"category must be one of {TICKET_CATEGORIES}")
        with self._lock:
            t = self._get_obj(self.tickets, id, "ticket")
            t["ticket_state"] = self._ticket_state(category)
            t["open"] = category != "resolved" if open is None else bool(open)
            self._bump(t, at)
            return copy.deepcopy(t)

    def update_ticket(self, id, at=None, **fields):
        with self._lock:
            t = self._get_obj(self.tickets, id, "ticket")
            t.update(fields)
            self._bump(t, at)
            return copy.deepcopy(t)

    def delete_ticket(self, id):
        with self._lock:
            return self.tickets.pop(str(id), None) is not None

    def conversation(self, id):
        with self._lock:
            c = self.conversations.get(str(id))
            return None if c is None else copy.deepcopy(c)

    def ticket(self, id):
        with self._lock:
            t = self.tickets.get(str(id))
            return None if t is None else copy.deepcopy(t)

    def contact(self, id):
        with self._lock:
            c = self.contacts.get(str(id))
            return None if c is None else copy.deepcopy(c)

    # ---------------------------------------------------------------- fault controls

    def fail_next(self, n, status=429, headers=None, body=None, path_prefix=None):
        """The next n API requests whose path starts with path_prefix (any path when None)
        get this answer instead of being processed. For 429, headers=None adds the
        X-RateLimit-* headers (Reset = now + 1 s); headers={} sends none."""
        ans = (status, body_bytes(body, status), None if headers is None else dict(headers))
        with self._lock:
            self._fail_queue.extend([(path_prefix, ans)] * int(n))

    def fail_for(self, seconds, status=503, headers=None, body=None, path_prefix=None):
        """An outage: matching API requests get this answer for `seconds` from now."""
        with self._lock:
            self._fail_until = time.monotonic() + seconds
            self._fail_for = (path_prefix, (status, body_bytes(body, status),
                                            None if headers is None else dict(headers)))

    def delay_next(self, seconds, n=1, process_first=True, path_prefix=None):
        """The next n matching API requests are answered `seconds` late. With
        process_first the request is applied at arrival and only the answer is late (a
        client that times out has still changed the state); otherwise after the sleep."""
        with self._lock:
            self._delay_queue.extend([(path_prefix, float(seconds), bool(process_first))]
                                     * int(n))

    def drop_connection_next(self, n=1, reset=False, path_prefix=None):
        """The next n matching API requests are read, then the connection is closed
        without an answer (FIN, or RST with reset=True)."""
        with self._lock:
            self._drop_queue.extend([(path_prefix, bool(reset))] * int(n))

    def rate_limit(self, limit_per_window, window_s=10):
        """Intercom's limit: at most limit_per_window authorised requests per fixed window
        of window_s seconds (aligned to the unix clock); beyond, 429 with X-RateLimit-*.
        None turns it off."""
        with self._lock:
            self._rate = None if limit_per_window is None else (int(limit_per_window),
                                                                float(window_s))
            self._rate_window = None
            self._rate_count = 0

    # ---------------------------------------------------------------- queries

    def events_for(self, user_id=None, contact_id=None, event_name=None):
        with self._lock:
            return [dict(e) for e in self.events
                    if (user_id is None or e["user_id"] == user_id or
                        e["external_id"] == user_id)
                    and (contact_id is None or e["contact_id"] == contact_id)
                    and (event_name is None or e["event_name"] == event_name)]

    def pages_served(self, kind=None):
        """Search pages served ("conversations" / "tickets" / None for both)."""
        with self._lock:
            return [dict(p) for p in self.search_pages if kind is None or p["kind"] == kind]

    def max_requests_in_window(self, window=10.0):
        """The largest number of API requests that arrived within any `window` seconds."""
        return sim_http.max_in_window(self.request_times(monotonic=True), window)

    def statuses(self, path_prefix=None):
        with self._lock:
            return [r["status"] for r in self.requests
                    if path_prefix is None or r["path"].startswith(path_prefix)]

    def summary(self):
        with self._lock:
            counts = collections.Counter(str(r["status"]) for r in self.requests)
            return {"requests": len(self.requests), "statuses": dict(counts),
                    "events": len(self.events), "event_duplicates": self.event_duplicates,
                    "rejected_events": len(self.rejected_events),
                    "lookups": dict(self.lookups),
                    "conversation_gets": dict(self.conversation_gets),
                    "ticket_gets": dict(self.ticket_gets),
                    "search_pages": len(self.search_pages),
                    "intercom_versions": {str(k): v for k, v in
                                          self.intercom_versions.items()},
                    "request_times": [r["wall"] for r in self.requests]}

    def snapshot(self):
        with self._lock:
            return copy.deepcopy({
                "events": self.events, "duplicates": self.duplicates,
                "rejected_events": self.rejected_events, "lookups": dict(self.lookups),
                "search_pages": self.search_pages, "contacts": self.contacts,
                "conversations": self.conversations, "tickets": self.tickets})

    # ---------------------------------------------------------------- request flow

    @staticmethod
    def _take(queue, path):
        """Pops and returns the first entry of queue whose prefix matches path."""
        for i, entry in enumerate(queue):
            if entry[0] is None or path.startswith(entry[0]):
                return queue.pop(i)
        return None

    def _serve_api(self, h, body):
        rec = self._new_record(h, body)
        version = rec["intercom_version"] = h.headers.get("Intercom-Version")
        drop = delay = None
        with self._lock:
            self.requests.append(rec)
            self.intercom_versions[version] += 1
            drop = self._take(self._drop_queue, h.path)
            if drop is not None:
                rec["fault"] = "drop"
            else:
                delay = self._take(self._delay_queue, h.path)
                if delay is not None:
                    rec["delay"] = delay[1]
        if drop is not None:
            h._drop(drop[1])
            return
        _, seconds, process_first = delay if delay is not None else (None, 0.0, True)
        self._respond(h, body, rec, seconds, process_first)

    def _fault_answer(self, spec):
        """Caller holds the lock. spec: (status, body, headers or None)."""
        status, body, headers = spec
        if headers is None:
            headers = {}
            if status == 429:
                limit = self._rate[0] if self._rate else DEFAULT_FAULT_LIMIT
                headers = {"X-RateLimit-Limit": limit, "X-RateLimit-Remaining": 0,
                           "X-RateLimit-Reset": int(math.ceil(time.time() + 1))}
        return _Answer(status, body, headers)

    def _rate_check(self):
        """Caller holds the lock. -> (allowed, headers) when a limit is set, else None."""
        if self._rate is None:
            return None
        limit, window = self._rate
        now = time.time()
        start = math.floor(now / window) * window
        if start != self._rate_window:
            self._rate_window, self._rate_count = start, 0
        reset = int(math.ceil(start + window))
        if self._rate_count >= limit:
            return False, {"X-RateLimit-Limit": limit, "X-RateLimit-Remaining": 0,
                           "X-RateLimit-Reset": reset}
        self._rate_count += 1
        return True, {"X-RateLimit-Limit": limit,
                      "X-RateLimit-Remaining": limit - self._rate_count,
                      "X-RateLimit-Reset": reset}

    def _answer(self, h, body, rec):
        path = h.path
        with self._lock:
            if time.monotonic() < self._fail_until and self._fail_for is not None and \
                    (self._fail_for[0] is None or path.startswith(self._fail_for[0])):
                rec["fault"] = "fail_for"
                return self._fault_answer(self._fail_for[1])
            entry = self._take(self._fail_queue, path)
            if entry is not None:
                rec["fault"] = "fail_next"
                return self._fault_answer(entry[1])
            token, reject = self.token, self.reject_status
        if not self._authorized(h.headers.get("Authorization"), token):
            return _Answer(reject, compact(error_list(("unauthorized",
                                                       "Access Token Invalid"))))
        with self._lock:
            rl = self._rate_check()
            if rl is not None and not rl[0]:
                rec["fault"] = "rate_limit"
                limit, window = self._rate
                return _Answer(429, compact(error_list(("rate_limit_exceeded",
                                                        rate_message(limit, window)))),
                               rl[1])
        try:
            ans = self._route(h.command, path, body, rec)
        except Exception as e:  # a simulator bug: make it loud
            sys.stderr.write(f"intercom_sim: internal error on {h.command} {path}: {e!r}\n")
            ans = _Answer(500, compact(error_list(("server_error",
                                                   f"intercom_sim internal error: {e!r}"))))
        if rl is not None:
            ans.headers.update(rl[1])
        return ans

    @staticmethod
    def _authorized(header, token):
        if not header or token is None:
            return False
        scheme, _, cred = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(cred.strip().encode(), str(token).encode())

    def _route(self, method, path, body, rec):
        raw_path = path.split("?", 1)[0]
        parts = raw_path.split("/")
        if raw_path == "/events" and method == "POST":
            return self._post_event(body, rec)
        if raw_path == "/conversations/search" and method == "POST":
            return self._search("conversations", body)
        if raw_path == "/tickets/search" and method == "POST":
            return self._search("tickets", body)
        if len(parts) == 3 and parts[2] and method in ("GET", "HEAD") and \
                parts[1] in ("contacts", "conversations", "tickets"):
            try:
                oid = urllib.parse.unquote_to_bytes(parts[2]).decode("utf-8")
            except UnicodeDecodeError:
                return self._error(404, ("not_found", "Resource Not Found"))
            return self._get_object(parts[1], oid)
        return self._error(404, ("not_found", "Resource Not Found"))

    @staticmethod
    def _error(status, *errors, headers=None):
        return _Answer(status, compact(error_list(*errors)), headers)

    @staticmethod
    def _ok(obj):
        return _Answer(200, compact(obj))

    # ---------------------------------------------------------------- GET objects

    @staticmethod
    def _public(obj, kind):
        out = copy.deepcopy(obj)
        if kind == "conversations":
            out["conversation_parts"] = {"type": "conversation_part.list",
                                         "conversation_parts": [], "total_count": 0}
        elif kind == "tickets":
            out["ticket_parts"] = {"type": "ticket_part.list", "ticket_parts": [],
                                   "total_count": 0}
        return out

    def _get_object(self, kind, oid):
        with self._lock:
            if kind == "contacts":
                self.lookups[oid] += 1
                c = self.contacts.get(oid)
                if c is None:
                    return self._error(404, ("not_found", "User Not Found"))
                return self._ok(copy.deepcopy(c))
            store = self.conversations if kind == "conversations" else self.tickets
            (self.conversation_gets if kind == "conversations" else self.ticket_gets)[oid] += 1
            obj = store.get(oid)
            if obj is None:
                return self._error(404, ("not_found", "Resource Not Found"))
            return self._ok(self._public(obj, kind))

    # ---------------------------------------------------------------- POST /events

    def _metadata_errors(self, meta):
        errs = []
        if not isinstance(meta, dict):
            return [("parameter_invalid", "metadata must be an object of flat key/value "
                     "pairs", "metadata")]
        for k, v in meta.items():
            if isinstance(v, dict):
                keys = set(v)
                if keys == {"url", "value"} and isinstance(v["url"], str):
                    continue          # rich link [DOC]
                if keys == {"amount", "currency"} and is_int(v["amount"]) and \
                        isinstance(v["currency"], str):
                    continue          # money [DOC]
                errs.append(("parameter_invalid", f"metadata value for '{k}' is a nested "
                             "object: nested JSON structure is not supported (only rich "
                             "links {url, value} and money {amount, currency})",
                             f"metadata.{k}"))
            elif isinstance(v, list):
                errs.append(("parameter_invalid", f"metadata value for '{k}' is an array: "
                             "nested JSON structure is not supported", f"metadata.{k}"))
        return errs

    def _resolve_user(self, kind, value):
        """Caller holds the lock. -> contact dict or None."""
        if kind == "id":
            return self.contacts.get(value)
        key = "external_id" if kind == "user_id" else "email"
        for c in self.contacts.values():
            if c.get("role") == "user" and c.get(key) is not None and c.get(key) == value:
                return c
        return None

    def _post_event(self, body, rec):
        try:
            obj = parse_json(body)
        except ValueError:
            ans = self._error(400, ("bad_request", "request body is not valid JSON"))
            self._reject_event(ans, body)
            return ans
        errs = []
        if not isinstance(obj, dict):
            errs.append(("parameter_invalid", "request body must be a JSON object", None))
            obj = {}
        name = obj.get("event_name")
        if name is None:
            errs.append(("parameter_not_found", "event_name is required", "event_name"))
        elif not isinstance(name, str) or not name.strip():
            errs.append(("parameter_invalid", "event_name must be a non-empty string",
                         "event_name"))
        created = obj.get("created_at")
        if created is None:
            errs.append(("parameter_not_found", "created_at is required", "created_at"))
        elif not is_int(created):
            errs.append(("type_mismatch", "created_at must be an integer (UTC unix "
                         "seconds)", "created_at"))
        idents = [(k, obj[k]) for k in ("user_id", "id", "email") if obj.get(k) is not None]
        if not idents:
            errs.append(("parameter_not_found", "one of user_id, id or email is required",
                         None))
        elif len(idents) > 1:
            errs.append(("parameter_invalid", "give exactly one of user_id, id or email "
                         f"(got {', '.join(k for k, _ in idents)})", None))
        else:
            k, v = idents[0]
            if is_int(v) and k != "email":
                v = str(v)
            if not isinstance(v, str) or v == "":
                errs.append(("type_mismatch", f"{k} must be a non-empty string", k))
            idents = [(k, v)]
        meta = obj.get("metadata")
        if meta is not None:
            errs += self._metadata_errors(meta)
        if errs:
            ans = self._error(400, *errs)
            self._reject_event(ans, body)
            return ans

        kind, value = idents[0]
        with self._lock:
            contact = self._resolve_user(kind, value)
            if contact is None:
                ans = self._error(404, ("not_found", "User Not Found"))
                self._reject_event(ans, body)
                return ans
            meta = meta or {}
            keys = list(meta)
            kept = {k: meta[k] for k in keys[:self.metadata_limit]}
            ev = {"event_name": name, "created_at": created,
                  "contact_id": contact["id"], "external_id": contact.get("external_id"),
                  "identified_by": kind, "user_id": obj.get("user_id"), "id": obj.get("id"),
                  "email": obj.get("email"), "metadata": kept, "metadata_sent": dict(meta),
                  "dropped_metadata_keys": keys[self.metadata_limit:],
                  "long_metadata_keys": [k for k, v in meta.items() if isinstance(v, str)
                                         and len(v) > METADATA_STRING_CHARS],
                  "intercom_version": rec["intercom_version"], "received": time.time(),
                  "body": obj}
            dkey = (contact["id"], name, created)
            if dkey in self._event_keys:
                self.event_duplicates += 1
                self.duplicates.append(ev)
            else:
                self._event_keys.add(dkey)
                self.events.append(ev)
        return _Answer(202)

    def _reject_event(self, ans, body):
        with self._lock:
            self.rejected_events.append({"status": ans.status,
                                         "errors": json.loads(ans.body)["errors"],
                                         "body": body.decode("utf-8", "replace"),
                                         "received": time.time()})

    # ---------------------------------------------------------------- searches

    def _search(self, kind, body):
        try:
            obj = parse_json(body)
        except ValueError:
            return self._error(400, ("bad_request", "request body is not valid JSON"))
        try:
            if not isinstance(obj, dict):
                raise SearchError("parameter_invalid", "request body must be a JSON object")
            if "query" not in obj:
                raise SearchError("parameter_not_found", "query is required", "query")
            pred = compile_query(kind, obj["query"])
            pag = obj.get("pagination")
            if pag is None:
                pag = {}
            if not isinstance(pag, dict):
                raise SearchError("parameter_invalid", "pagination must be an object",
                                  "pagination")
            per_page = pag.get("per_page", self.default_per_page)
            if not is_int(per_page) or not 1 <= per_page <= self.max_per_page:
                raise SearchError("parameter_invalid", f"per_page must be an integer from 1 "
                                  f"to {self.max_per_page}", "pagination.per_page")
            cursor = pag.get("starting_after")
            after, page = (None, 1) if cursor is None else decode_cursor(kind, cursor)
        except SearchError as e:
            return self._error(400, (e.code, e.message, e.field))

        with self._lock:
            store = self.conversations if kind == "conversations" else self.tickets
            matches = sorted((o for o in store.values() if pred(o)), key=sort_key)
            total = len(matches)
            start = 0
            if after is not None:
                while start < total and sort_key(matches[start]) <= after:
                    start += 1
            chunk = matches[start:start + per_page]
            more = start + per_page < total
            items = [self._public(o, None) for o in chunk]
            nxt = None
            if more and chunk:
                last = chunk[-1]
                nxt = encode_cursor(kind, last.get("created_at") or 0, last["id"], page + 1)
            total_pages = (total + per_page - 1) // per_page
            pages = {"type": "pages", "page": page}
            if nxt is not None:
                pages["next"] = {"page": page + 1, "starting_after": nxt}
            pages["per_page"] = per_page
            pages["total_pages"] = total_pages
            self.search_pages.append({"kind": kind, "page": page, "per_page": per_page,
                                      "starting_after": cursor, "next": nxt,
                                      "ids": [o["id"] for o in chunk], "total_count": total,
                                      "total_pages": total_pages, "query": obj["query"],
                                      "time": time.time()})
        list_type = "conversation.list" if kind == "conversations" else "ticket.list"
        return self._ok({"type": list_type, kind: items, "total_count": total,
                         "pages": pages})

    # ---------------------------------------------------------------- HTTP control API

    def _control(self, method, path, body):
        try:
            name, args = sim_http.control_request(path, body)
        except ValueError as e:
            return _Answer(400, compact({"error": str(e)}))
        ok = {"ok": True}
        try:
            if method == "GET" and name == "summary":
                return _Answer(200, compact(self.summary()))
            if method == "GET" and name == "state":
                return _Answer(200, compact(self.snapshot()))
            if method == "GET" and name == "requests":
                return _Answer(200, compact(self._requests_json(("intercom_version",))))
            if method != "POST":
                return _Answer(404, compact({"error": f"no control {method} {name}"}))
            if name == "reset":
                self.reset()
            elif name == "token":
                self.set_token(args["token"], int(args.get("reject_status", 401)))
            elif name == "contacts":
                items = args["contacts"] if "contacts" in args else [args]
                for c in items:
                    self.add_contact(**c)
                ok["count"] = len(items)
            elif name in ("conversations", "tickets"):
                items = args[name] if name in args else [args]
                add = self.add_conversation if name == "conversations" else self.add_ticket
                out = []
                for it in items:
                    it = dict(it)
                    if "contact" in it:
                        it["contacts"] = it.pop("contact")
                    out.append(add(**it))
                ok["objects"] = out
            elif name == "conversation_state":
                self.set_conversation_state(args["id"], args["state"], args.get("at"))
            elif name == "ticket_state":
                self.set_ticket_state(args["id"], args["category"], args.get("open"),
                                      args.get("at"))
            elif name == "delete":
                fn = {"conversation": self.delete_conversation, "ticket": self.delete_ticket,
                      "contact": self.delete_contact}[args["kind"]]
                ok["deleted"] = fn(args["id"])
            elif name == "fail_next":
                self.fail_next(int(args.get("n", 1)), int(args.get("status", 429)),
                               args.get("headers"), args.get("body"), args.get("path_prefix"))
            elif name == "fail_for":
                self.fail_for(float(args["seconds"]), int(args.get("status", 503)),
                              args.get("headers"), args.get("body"), args.get("path_prefix"))
            elif name == "delay_next":
                self.delay_next(float(args["seconds"]), int(args.get("n", 1)),
                                bool(args.get("process_first", True)), args.get("path_prefix"))
            elif name == "drop_next":
                self.drop_connection_next(int(args.get("n", 1)), bool(args.get("reset")),
                                          args.get("path_prefix"))
            elif name == "rate_limit":
                self.rate_limit(args.get("limit"), float(args.get("window_s", 10)))
            else:
                return _Answer(404, compact({"error": f"no control {name!r}"}))
        except (KeyError, TypeError, ValueError) as e:
            return _Answer(400, compact({"error": f"bad arguments: {e!r}"}))
        return _Answer(200, compact(ok))


# --------------------------------------------------------------------------- script

def main(argv=None):
    ap = argparse.ArgumentParser(description="Intercom REST API simulator")
    ap.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--token", default="token", help="the accepted Bearer token")
    ap.add_argument("--seed-users", type=int, default=0,
                    help="create N users: contact c<i>, external_id u<i>, u<i>@example.com")
    ap.add_argument("--rate-limit", type=int, default=None,
                    help="answer 429 beyond this many requests per window")
    ap.add_argument("--window", type=float, default=10.0, help="rate-limit window, seconds")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    sim = IntercomSim(port=a.port, token=a.token, host=a.host, seed_users=a.seed_users,
                      verbose=a.verbose).start()
    if a.rate_limit:
        sim.rate_limit(a.rate_limit, a.window)
    return sim_http.serve_until_signalled(sim, "intercom_sim")


if __name__ == "__main__":
    sys.exit(main())
