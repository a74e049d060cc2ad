"""Bad input: every malformed, unsigned, oversized, stalled or misdirected request gets a
clear error status with a JSON body {"error", "message"}, changes nothing in Redis, and
leaves the service up.

"Changes nothing" is checked against a seeded state: before each bad request the user
u-seed has an open conversation (1001) and an open ticket (3001). Every bad webhook below
is built so that, were it accepted, it would visibly change that state (close 1001,
resolve 3001, tag u-seed); a control test proves the unmutated payloads do change it.
"""
import copy
import hashlib
import hmac
import http.client
import json
import socket
import threading
import time

import pytest

from harness import SECRET, sign
from payloads import contact_tag, conversation, ticket

SEED_USER = "u-seed"
SEED_CONTACT = "cid-seed"
ONE_MIB = 1024 * 1024


# --------------------------------------------------------------------------- helpers

def assert_error(r, status, code=None):
    """status, a JSON content type, and a body {"error": str, "message": str}."""
    assert r.status == status, f"expected {status}, got {r!r}"
    ctype = r.headers.get("content-type", "")
    assert ctype.startswith("application/json"), f"error content-type {ctype!r}: {r!r}"
    body = r.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"].strip(), body
    if code is not None:
        assert body["error"] == code, body
    return body


def _value(redis, key, kind):
    if kind == "hash":
        flat = redis.cmd("HGETALL", key)
        return dict(zip(flat[::2], flat[1::2]))
    if kind == "string":
        return redis.cmd("GET", key)
    if kind == "list":
        return redis.cmd("LRANGE", key, 0, -1)
    if kind == "set":
        return sorted(redis.cmd("SMEMBERS", key))
    if kind == "zset":
        return redis.cmd("ZRANGE", key, 0, -1, "WITHSCORES")
    return None


def _is_outbox(key):
    # Customer.io work (the per-partition queue and per-user event lists) is drained in
    # the background (dry run), so those keys may legitimately disappear meanwhile.
    rest = key.split("}", 1)[-1]
    return rest == ":q" or rest.startswith(":e:")


def snapshot(redis):
    """Every key with its type and value, except the background-drained outbox keys."""
    out = {}
    for key in redis.cmd("KEYS", "*"):
        kind = redis.cmd("TYPE", key)
        if not _is_outbox(key):
            out[key] = (kind, _value(redis, key, kind))
    return out


def assert_unchanged(redis, before, before_keys, what):
    after_keys = set(redis.cmd("KEYS", "*"))
    new = after_keys - before_keys
    assert not new, f"{what}: created Redis keys {sorted(new)}"
    after = snapshot(redis)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert not changed, f"{what}: changed Redis keys {sorted(changed)}"


def later():
    return int(time.time()) - 60


@pytest.fixture
def seeded(svc, redis):
    """u-seed with open conversation 1001 and open ticket 3001; returns a checker."""
    r = svc.webhook(conversation(conv_id="1001", users=[(SEED_CONTACT, SEED_USER)],
                                 state="open", updated_at=1768000100))
    assert r.status == 200, r
    r = svc.webhook(ticket(ticket_id="3001", users=[(SEED_CONTACT, SEED_USER)],
                           category="submitted", updated_at=1768000100))
    assert r.status == 200, r
    u = svc.user(SEED_USER)
    assert sorted(t["id"] for t in u["open_tickets"]) == ["1001", "3001"], u
    assert u["churn_risk"] is False

    class Checker:
        def __enter__(self):
            self.keys = set(redis.cmd("KEYS", "*"))
            self.before = snapshot(redis)
            self.state = svc.user(SEED_USER)
            return self

        def __exit__(self, *exc):
            if exc[0] is None:
                assert_unchanged(redis, self.before, self.keys, "bad request")
                assert svc.user(SEED_USER) == self.state
                assert svc.get("/healthz").status == 200
            return False

    return Checker


def closing_conversation():
    """Valid: closes seeded conversation 1001 (newer updated_at)."""
    return conversation(conv_id="1001", users=[(SEED_CONTACT, SEED_USER)], state="closed",
                        updated_at=1768000900)


def resolving_ticket():
    """Valid: resolves seeded ticket 3001."""
    return ticket(ticket_id="3001", users=[(SEED_CONTACT, SEED_USER)], category="resolved",
                  updated_at=1768000900)


def churn_tag():
    """Valid: tags u-seed churn-risk now."""
    return contact_tag(contact_id=SEED_CONTACT, external_id=SEED_USER, tag="churn-risk",
                       event_at=later())


def signed_post(svc, body, headers=None):
    h = {"Content-Type": "application/json", "X-Hub-Signature": sign(body)}
    h.update(headers or {})
    return svc.post("/webhooks/intercom", body=body, headers=h)


# --------------------------------------------------------------------------- control

@pytest.mark.parametrize("build", [closing_conversation, resolving_ticket, churn_tag],
                         ids=["close-conversation", "resolve-ticket", "churn-tag"])
def test_control_valid_base_payloads_do_change_state(svc, seeded, build):
    """The bad-input cases below mutate these payloads; unmutated, each changes state,
    so 'nothing changed' after a mutated one really means the mutation was rejected."""
    before = svc.user(SEED_USER)
    r = svc.webhook(build())
    assert r.status == 200, r
    assert r.json().get("status") == "recorded", r
    assert svc.user(SEED_USER) != before


# --------------------------------------------------------------------------- signatures

def _valid_body():
    return json.dumps(closing_conversation()).encode()


SIGNATURE_CASES = {
    "missing": lambda body: None,
    "empty": lambda body: "",
    "prefix-only": lambda body: "sha1=",
    "bare-hex-without-prefix": lambda body: sign(body)[len("sha1="):],
    "non-hex": lambda body: "sha1=" + "z" * 40,
    "truncated": lambda body: sign(body)[:-1],
    "extra-hex": lambda body: sign(body) + "00",
    "garbage": lambda body: "not a signature at all",
    "sha256-with-right-secret": lambda body: "sha256=" + hmac.new(
        SECRET.encode(), body, hashlib.sha256).hexdigest(),
    "sha1-with-other-secret": lambda body: sign(body, secret="some-other-secret"),
    "sha1-of-reserialised-body": lambda body: sign(
        json.dumps(json.loads(body), indent=2).encode()),
    "sha1-of-body-with-trailing-newline": lambda body: sign(body + b"\n"),
    "sha1-of-empty-body": lambda body: sign(b""),
}


@pytest.mark.parametrize("case", list(SIGNATURE_CASES))
def test_bad_signature_is_401_and_changes_nothing(svc, seeded, case):
    body = _valid_body()
    value = SIGNATURE_CASES[case](body)
    headers = {"Content-Type": "application/json"}
    if value is not None:
        headers["X-Hub-Signature"] = value
    with seeded():
        r = svc.post("/webhooks/intercom", body=body, headers=headers)
        assert_error(r, 401, "invalid_signature")


def test_signature_checked_before_parsing(svc, seeded):
    """An unsigned non-JSON body is refused for its signature, not parsed."""
    with seeded():
        r = svc.post("/webhooks/intercom", body=b"not json",
                     headers={"Content-Type": "application/json"})
        assert_error(r, 401, "invalid_signature")


# --------------------------------------------------------------------------- not JSON / not a notification

RAW_BODIES = {
    "not-json": b"not json",
    "empty-body": b"",
    "truncated-json": _valid_body()[:40],
    "trailing-garbage": _valid_body() + b" x",
    "trailing-nul": _valid_body() + b"\x00",
    "invalid-utf8": _valid_body().replace(b'"u-seed"', b'"u-s\xffeed"'),
    "json-array": b"[1, 2]",
    "json-array-of-notification": json.dumps([closing_conversation()]).encode(),
    "json-string": b'"notification_event"',
    "json-number": b"42",
    "json-null": b"null",
    "empty-object": b"{}",
}


@pytest.mark.parametrize("case", list(RAW_BODIES))
def test_non_notification_body_is_400(svc, seeded, case):
    with seeded():
        r = signed_post(svc, RAW_BODIES[case])
        assert_error(r, 400, "invalid_notification")


def _del(*path):
    def f(doc):
        node = doc
        for p in path[:-1]:
            node = node[p]
        del node[path[-1]]
    return f


def _set(value, *path):
    def f(doc):
        node = doc
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = copy.deepcopy(value)
    return f


ITEM = ("data", "item")
CONTACT0 = ITEM + ("contacts", "contacts", 0)

# (base payload, mutation): each mutation leaves an otherwise valid notification.
MUTATIONS = {
    # not a notification
    "type-missing": (closing_conversation, _del("type")),
    "type-other": (closing_conversation, _set("event", "type")),
    "type-null": (closing_conversation, _set(None, "type")),
    "topic-missing": (closing_conversation, _del("topic")),
    "topic-null": (closing_conversation, _set(None, "topic")),
    "topic-number": (closing_conversation, _set(5, "topic")),
    "data-missing": (closing_conversation, _del("data")),
    "data-array": (closing_conversation, _set([], "data")),
    "data-item-missing": (closing_conversation, _del(*ITEM)),
    "data-item-null": (closing_conversation, _set(None, *ITEM)),
    "data-item-array": (closing_conversation, _set([], *ITEM)),
    "data-item-string": (closing_conversation, _set("x", *ITEM)),
    # wrong types in fields the service reads
    "notification-id-object": (closing_conversation, _set({}, "id")),
    "created_at-yesterday(envelope)": (churn_tag, _set("yesterday", "created_at")),
    "item.id-object": (closing_conversation, _set({"id": "1001"}, *ITEM, "id")),
    "item.id-array": (closing_conversation, _set(["1001"], *ITEM, "id")),
    "item.id-bool": (closing_conversation, _set(True, *ITEM, "id")),
    "item.id-float": (closing_conversation, _set(1001.5, *ITEM, "id")),
    "item.state-number": (closing_conversation, _set(0, *ITEM, "state")),
    "item.open-string": (closing_conversation, _set("false", *ITEM, "open")),
    "item.open-string-no-state": (
        lambda: _without_state(closing_conversation()), _set("false", *ITEM, "open")),
    "item.created_at-yesterday": (closing_conversation, _set("yesterday", *ITEM, "created_at")),
    "item.created_at-bool": (closing_conversation, _set(True, *ITEM, "created_at")),
    "item.created_at-negative": (closing_conversation, _set(-5, *ITEM, "created_at")),
    "item.updated_at-yesterday": (closing_conversation, _set("yesterday", *ITEM, "updated_at")),
    "item.updated_at-object": (closing_conversation, _set({}, *ITEM, "updated_at")),
    "item.priority-number": (closing_conversation, _set(1, *ITEM, "priority")),
    "contacts-string": (closing_conversation, _set("cid-seed", *ITEM, "contacts")),
    "contacts-array": (closing_conversation,
                       _set([{"type": "contact", "id": SEED_CONTACT}], *ITEM, "contacts")),
    "contacts.contacts-object": (closing_conversation,
                                 _set({}, *ITEM, "contacts", "contacts")),
    "contacts.contacts[0]-number": (closing_conversation, _set(5, *CONTACT0)),
    "contacts.contacts[0].id-object": (closing_conversation, _set({}, *CONTACT0, "id")),
    "rating-string": (closing_conversation, _set({"rating": "1", "created_at": 1768000800},
                                                 *ITEM, "conversation_rating")),
    "ticket_state-number": (resolving_ticket, _set(5, *ITEM, "ticket_state")),
    "ticket_state.category-number": (resolving_ticket,
                                     _set(5, *ITEM, "ticket_state", "category")),
    "tag.name-number": (churn_tag, _set(5, *ITEM, "tag", "name")),
}


def _without_state(doc):
    del doc["data"]["item"]["state"]
    return doc


@pytest.mark.parametrize("case", list(MUTATIONS))
def test_malformed_notification_is_400_and_changes_nothing(svc, seeded, case):
    build, mutate = MUTATIONS[case]
    doc = build()
    mutate(doc)
    with seeded():
        r = svc.webhook(doc)
        assert_error(r, 400, "invalid_notification")


# --------------------------------------------------------------------------- size

def _padded(doc, total):
    """doc serialised with a "pad" member so the body is exactly `total` bytes."""
    base = json.dumps(doc).encode()
    pad = total - len(base) - len(b',"pad":""')
    assert pad >= 0
    return base[:-1] + b',"pad":"' + b"x" * pad + b'"}'


def test_body_over_1_mib_is_413_and_changes_nothing(svc, seeded):
    body = _padded(closing_conversation(), ONE_MIB + 1)
    with seeded():
        r = signed_post(svc, body)
        # evhttp may answer 413 itself; this service answers with the JSON error shape.
        assert_error(r, 413, "payload_too_large")


def test_chunked_body_over_1_mib_is_413(svc, seeded):
    body = _padded(closing_conversation(), ONE_MIB + 4096)

    def chunks():
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    with seeded():
        conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
        try:
            conn.request("POST", "/webhooks/intercom", body=chunks(), encode_chunked=True,
                         headers={"Content-Type": "application/json",
                                  "X-Hub-Signature": sign(body)})
            resp = conn.getresponse()
            status, data = resp.status, resp.read()
        except (ConnectionResetError, BrokenPipeError):
            pytest.fail("connection reset instead of a 413 answer")
        finally:
            conn.close()
        assert status == 413, (status, data)
        assert json.loads(data)["error"] == "payload_too_large"


def test_body_of_exactly_1_mib_is_accepted(svc, seeded):
    """The limit is 'over 1 MiB': a valid notification of exactly 1 MiB is recorded."""
    body = _padded(closing_conversation(), ONE_MIB)
    assert len(body) == ONE_MIB
    r = signed_post(svc, body)
    assert r.status == 200, r
    assert svc.user(SEED_USER)["open_ticket_count"] == 1


# --------------------------------------------------------------------------- HEAD, no secret

def test_head_webhook_url_check(svc):
    r = svc.request("HEAD", "/webhooks/intercom")
    assert r.status == 200, r
    assert r.body == b""


def test_webhooks_without_configured_secret_are_503(make_service, redis):
    s = make_service(env={"INTERCOM_CLIENT_SECRET": None})
    assert s.get("/healthz").status == 200
    doc = conversation(conv_id="1001", users=[(SEED_CONTACT, SEED_USER)])
    assert_error(s.webhook(doc), 503)                       # signed with the usual secret
    body = json.dumps(doc).encode()
    assert_error(s.post("/webhooks/intercom", body=body,
                        headers={"Content-Type": "application/json"}), 503)  # unsigned
    assert redis.cmd("DBSIZE") == 0
    assert s.user(SEED_USER)["open_tickets"] == []
    assert s.request("HEAD", "/webhooks/intercom").status == 200


# --------------------------------------------------------------------------- routing

@pytest.mark.parametrize("method,path", [
    ("GET", "/"), ("GET", "/nope"), ("POST", "/nope"), ("GET", "/v1/users"),
    ("GET", "/v1/users/x/nope"), ("GET", "/v1/users/a/b"), ("POST", "/webhooks/intercom/x"),
    ("GET", "/v2/users/x"), ("GET", "/v1/suppression"), ("GET", "/healthz/x"),
])
def test_unknown_path_is_404(svc, redis, method, path):
    r = svc.request(method, path, body=b"{}" if method == "POST" else None)
    assert_error(r, 404)
    assert redis.cmd("DBSIZE") == 0


@pytest.mark.parametrize("method,path,allowed", [
    ("GET", "/webhooks/intercom", "POST"),
    ("PUT", "/webhooks/intercom", "POST"),
    ("DELETE", "/webhooks/intercom", "POST"),
    ("DELETE", "/v1/users/x", "GET"),
    ("POST", "/v1/users/x", "GET"),
    ("PUT", "/v1/users/x", "GET"),
    ("POST", "/v1/users/x/suppression?campaign=renewal", "GET"),
    ("GET", "/v1/suppression/check", "POST"),
    ("DELETE", "/v1/suppression/check", "POST"),
    ("POST", "/healthz", "GET"),
    ("POST", "/readyz", "GET"),
    ("POST", "/metrics", "GET"),
])
def test_wrong_method_is_405_with_allow(svc, redis, method, path, allowed):
    r = svc.request(method, path, body=b"{}" if method in ("POST", "PUT") else None)
    assert_error(r, 405)
    allow = {m.strip().upper() for m in r.headers.get("allow", "").split(",") if m.strip()}
    assert allowed in allow, f"Allow header {r.headers.get('allow')!r}"
    assert method not in allow, f"Allow header {r.headers.get('allow')!r}"
    assert redis.cmd("DBSIZE") == 0


# --------------------------------------------------------------------------- batch check

BATCH_BODIES = {
    "not-json": b"{campaign: renewal}",
    "empty": b"",
    "array": b'["renewal", ["u1"]]',
    "string": b'"renewal"',
    "null": b"null",
    "empty-object": b"{}",
    "user_ids-missing": {"campaign": "renewal"},
    "user_ids-string": {"campaign": "renewal", "user_ids": "u1"},
    "user_ids-object": {"campaign": "renewal", "user_ids": {"u1": True}},
    "user_ids-null": {"campaign": "renewal", "user_ids": None},
    "user_ids-empty": {"campaign": "renewal", "user_ids": []},
    "user_ids-1001": {"campaign": "renewal", "user_ids": [f"u-{i}" for i in range(1001)]},
    "user_ids-number": {"campaign": "renewal", "user_ids": [1]},
    "user_ids-null-item": {"campaign": "renewal", "user_ids": [None]},
    "user_ids-nested-list": {"campaign": "renewal", "user_ids": ["u1", ["u2"]]},
    "user_ids-object-item": {"campaign": "renewal", "user_ids": [{"id": "u1"}]},
    "campaign-missing": {"user_ids": ["u1"]},
    "campaign-number": {"campaign": 5, "user_ids": ["u1"]},
    "campaign-null": {"campaign": None, "user_ids": ["u1"]},
}


@pytest.mark.parametrize("case", list(BATCH_BODIES))
def test_bad_batch_body_is_400(svc, seeded, case):
    body = BATCH_BODIES[case]
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    with seeded():
        r = svc.post("/v1/suppression/check", body=body,
                     headers={"Content-Type": "application/json"})
        assert_error(r, 400)


def test_batch_unknown_campaign_is_400_unknown_campaign(svc, seeded):
    with seeded():
        assert_error(svc.check("no-such-campaign", [SEED_USER]), 400, "unknown_campaign")


# --------------------------------------------------------------------------- user ids in paths

ROUND_TRIP_IDS = {
    "email": ("user@example.com", "user%40example.com"),
    "slash": ("a/b", "a%2Fb"),
    "plus-literal": ("a+b", "a+b"),
    "plus-encoded": ("a+b", "a%2Bb"),
    "utf8": ("\u00e9l\u00e8ve", "%C3%A9l%C3%A8ve"),
    "space": ("with space", "with%20space"),
    "percent": ("100%", "100%25"),
    "256-bytes": ("x" * 256, "x" * 256),
    "256-bytes-utf8": ("\u00e9" * 128, "%C3%A9" * 128),
}


@pytest.mark.parametrize("case", list(ROUND_TRIP_IDS))
def test_user_id_in_path_is_percent_decoded(svc, redis, case):
    user, encoded = ROUND_TRIP_IDS[case]
    # the webhook stores the ticket under the raw external_id ...
    r = svc.webhook(conversation(conv_id="4001", users=[("cid-rt", user)], state="open",
                                 updated_at=1768000100))
    assert r.status == 200, r
    # ... and the encoded path finds it, echoing the decoded id
    r = svc.get(f"/v1/users/{encoded}")
    assert r.status == 200, r
    u = r.json()
    assert u["user_id"] == user
    assert [t["id"] for t in u["open_tickets"]] == ["4001"], u
    r = svc.get(f"/v1/users/{encoded}/suppression?campaign=commercial")
    assert r.status == 200, r
    assert r.json() == {"user_id": user, "campaign": "commercial", "suppressed": True,
                        "reasons": ["open_ticket"]}
    r = svc.check("commercial", [user])
    assert r.status == 200, r
    assert r.json()["results"][0]["user_id"] == user
    assert r.json()["results"][0]["suppressed"] is True


BAD_PATH_IDS = {
    "empty": "",
    "257-bytes": "x" * 257,
    "257-bytes-utf8": "%C3%A9" * 128 + "x",
    "nul": "a%00b",
    "invalid-utf8-ff": "a%FFb",
    "truncated-utf8": "a%C3",
    "overlong-utf8": "%C0%AF",
    "utf16-surrogate": "%ED%A0%80",
}


@pytest.mark.parametrize("case", list(BAD_PATH_IDS))
def test_invalid_user_id_in_path_is_400(svc, redis, case):
    encoded = BAD_PATH_IDS[case]
    assert_error(svc.get(f"/v1/users/{encoded}"), 400, "invalid_user_id")
    if encoded:
        assert_error(svc.get(f"/v1/users/{encoded}/suppression?campaign=renewal"), 400,
                     "invalid_user_id")
    assert redis.cmd("DBSIZE") == 0


@pytest.mark.parametrize("user", ["", "x" * 257], ids=["empty", "257-bytes"])
def test_invalid_user_id_in_batch_is_400(svc, redis, user):
    assert_error(svc.check("renewal", ["ok", user]), 400)
    assert redis.cmd("DBSIZE") == 0


# --------------------------------------------------------------------------- slow loris

def _closed_within(sock, seconds):
    """Seconds until the server closes `sock` (answers are read and discarded)."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < seconds:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
        if not data:
            return time.monotonic() - start
    return None


def test_slow_loris_connections_are_closed_and_others_served(make_service, redis):
    s = make_service(env={"SUPPRESS_HTTP_TIMEOUT": "2"})
    body = json.dumps(conversation(conv_id="5001", users=[("cid-sl", "u-sl")])).encode()
    partials = [
        # headers complete, body stalls half way
        b"POST /webhooks/intercom HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Hub-Signature: " + sign(body).encode() + b"\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\n\r\n" + body[: len(body) // 2],
        # headers never finish
        b"GET /v1/users/u-sl HTTP/1.1\r\nHost: x\r\n",
        # request line never finishes
        b"GE",
        # nothing at all after connecting
        b"",
    ]
    stalled = []
    for i in range(20):   # more stalled connections than event loops
        c = socket.create_connection(("127.0.0.1", s.port))
        if partials[i % len(partials)]:
            c.sendall(partials[i % len(partials)])
        stalled.append(c)
    try:
        # meanwhile, other clients are served promptly
        t0 = time.monotonic()
        r = s.webhook(conversation(conv_id="5002", users=[("cid-sl2", "u-sl2")]))
        assert r.status == 200, r
        assert s.get("/healthz").status == 200
        assert s.user("u-sl2")["open_ticket_count"] == 1
        assert time.monotonic() - t0 < 1.5, "requests were held up by stalled connections"

        closed = []
        results = [None] * len(stalled)

        def watch(i, c):
            results[i] = _closed_within(c, 6.0)

        threads = [threading.Thread(target=watch, args=(i, c)) for i, c in enumerate(stalled)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        closed = [x for x in results if x is not None]
        assert len(closed) == len(stalled), (
            f"{len(stalled) - len(closed)} of {len(stalled)} stalled connections were still "
            f"open 6 s after stalling with SUPPRESS_HTTP_TIMEOUT=2")
    finally:
        for c in stalled:
            c.close()
    # the half-sent webhook was not recorded
    assert s.user("u-sl")["open_tickets"] == []
    assert s.get("/healthz").status == 200


# --------------------------------------------------------------------------- still up

def test_service_still_up_after_bad_input(svc):
    assert svc.alive()
    r = svc.get("/healthz")
    assert r.status == 200, r
    assert svc.get("/readyz").status == 200
    r = svc.webhook(conversation(conv_id="9001", users=[("cid-up", "u-up")]))
    assert r.status == 200, r
    assert svc.user("u-up")["open_ticket_count"] == 1
