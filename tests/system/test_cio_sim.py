"""Tests of the Customer.io Track API simulator itself (cio_sim.py): in-process, fast,
no suppressd and no Redis."""
import base64
import http.client
import json
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from cio_sim import CioSim, UNAUTHORIZED_BODY
from harness import free_port, wait_for
from sim_http import http_call

SITE, KEY = "site-1", "key-1"
ULID_A = "01HZZZZZZZZZZZZZZZZZZZZZZA"
ULID_B = "01HZZZZZZZZZZZZZZZZZZZZZZB"
CT = "application/json; charset=utf-8"


@pytest.fixture
def sim():
    s = CioSim(site_id=SITE, api_key=KEY).start()
    yield s
    s.stop()


def auth(site=SITE, key=KEY, urlsafe=False):
    enc = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return "Basic " + enc(f"{site}:{key}".encode()).decode()


def call(sim, method, path, body=None, headers=None, authed=True, timeout=5):
    h = {"Content-Type": "application/json"}
    if authed:
        h["Authorization"] = auth()
    h.update(headers or {})
    return http_call(sim.port, method, path, body, h, timeout)


def identify(sim, ident, attrs, **kw):
    return call(sim, "PUT", "/api/v1/customers/" + urllib.parse.quote(ident, safe=""),
                attrs, **kw)


def track(sim, ident, event, **kw):
    return call(sim, "POST", "/api/v1/customers/" + urllib.parse.quote(ident, safe="") +
                "/events", event, **kw)


def batch(sim, ops, **kw):
    return call(sim, "POST", "/api/v2/batch", {"batch": ops}, **kw)


def person(ident, action="identify", **kw):
    op = {"type": "person", "identifiers": {"id": ident}, "action": action}
    op.update(kw)
    return op


def v1_error(msg):
    return ('{\n  "meta": {\n    "errors": [\n      "%s"\n    ]\n  }\n}\n' % msg).encode()


# --------------------------------------------------------------------------- auth

def test_401_body_is_exactly_customerios(sim):
    for kw in ({"authed": False},
               {"headers": {"Authorization": auth(key="wrong")}},
               {"headers": {"Authorization": "Bearer " + KEY}},
               {"headers": {"Authorization": "Basic !!!notbase64"}}):
        r = identify(sim, "u1", {"a": 1}, **kw)
        assert r.status == 401, (kw, r)
        assert r.body == UNAUTHORIZED_BODY == \
            b'{\n  "meta": {\n    "error": "Unauthorized request"\n  }\n}\n'
        assert r.headers["content-type"] == CT
    assert sim.profiles == {}
    assert [q["status"] for q in sim.requests] == [401] * 4
    # set_credentials turns 401 on and off
    sim.set_credentials("other", "k2")
    assert identify(sim, "u1", {"a": 1}).status == 401
    assert identify(sim, "u1", {"a": 1},
                    headers={"Authorization": auth("other", "k2")}).status == 200
    sim.set_credentials(SITE, KEY)
    assert identify(sim, "u1", {"a": 2}).status == 200


def test_url_safe_base64_like_the_go_client(sim):
    sim.set_credentials("s", "~~~>>>")          # base64 has '+' and '/'
    assert "+" in auth("s", "~~~>>>") or "/" in auth("s", "~~~>>>")
    for urlsafe in (False, True):
        r = identify(sim, "u1", {"a": 1},
                     headers={"Authorization": auth("s", "~~~>>>", urlsafe=urlsafe)})
        assert r.status == 200, r


# --------------------------------------------------------------------------- v1

def test_v1_identify_and_track(sim):
    r = identify(sim, "u1", {"email": "a@example.com", "has_open_ticket": True,
                             "open_ticket_count": 2})
    assert r.status == 200 and r.body == b"{}\n", r
    assert r.headers["content-type"] == CT
    assert r.headers["content-length"] == "3"
    assert r.headers["cache-control"] == "no-cache, no-store, must-revalidate, max-age=0"
    assert "retry-after" not in r.headers
    assert identify(sim, "u1", {"open_ticket_count": 0, "has_open_ticket": False}).status == 200
    assert sim.profiles["u1"] == {"email": "a@example.com", "has_open_ticket": False,
                                  "open_ticket_count": 0}
    assert sim.last_identify("u1") == {"open_ticket_count": 0, "has_open_ticket": False}
    assert [i for i, _, _ in sim.identifies] == ["u1", "u1"]

    r = track(sim, "u1", {"name": "  ticket_opened ", "data": {"ticket": "7"},
                          "timestamp": 1768000000, "id": ULID_A})
    assert r.status == 200 and r.body == b"{}\n", r
    (ident, ev), = sim.events
    assert ident == "u1"
    assert ev["name"] == "ticket_opened"            # trimmed, like the real API
    assert ev["data"] == {"ticket": "7"} and ev["timestamp"] == 1768000000
    assert ev["id"] == ULID_A and ev["api"] == "v1" and ev["type"] == "event"

    req = sim.requests[0]
    assert req["method"] == "PUT" and req["path"] == "/api/v1/customers/u1"
    assert req["headers"]["authorization"] == auth()
    assert req["json"] == {"email": "a@example.com", "has_open_ticket": True,
                           "open_ticket_count": 2}
    assert isinstance(req["body"], bytes) and req["status"] == 200


def test_v1_identifier_is_percent_decoded(sim):
    ident = "a b+c@x.com/1"
    assert identify(sim, ident, {"x": 1}).status == 200
    assert track(sim, ident, {"name": "e"}).status == 200
    assert sim.profiles == {ident: {"x": 1}}
    assert sim.events[0][0] == ident


def test_v1_update_only_for_unknown_person(sim):
    assert identify(sim, "ghost", {"a": 1, "_update": True}).status == 200
    assert sim.profiles == {"ghost": {"a": 1}}       # create_on_update defaults to True
    assert sim.update_misses == ["ghost"]
    sim.reset()
    sim.set_options(create_on_update=False)          # the real behaviour
    assert identify(sim, "ghost", {"a": 1, "_update": True}).status == 200
    assert sim.profiles == {}
    assert sim.last_identify("ghost") == {"a": 1, "_update": True}
    assert sim.update_misses == ["ghost"]
    assert identify(sim, "ghost", {"a": 1}).status == 200
    assert identify(sim, "ghost", {"b": 2, "_update": True}).status == 200
    assert sim.profiles == {"ghost": {"a": 1, "b": 2}}


def test_v1_bad_bodies(sim):
    for body in (b"not json", b"", b"[1,2]", b'"s"', b"{\"a\": NaN}"):
        r = identify(sim, "u1", body)
        assert r.status == 400, (body, r)
        assert r.headers["content-type"] == CT
        assert list(r.json()["meta"]) == ["errors"] and r.body.endswith(b"\n}\n")
    r = identify(sim, "u1", {"nested": {"a": 1}})
    assert r.status == 400 and "nested" in r.json()["meta"]["errors"][0]
    r = identify(sim, "u1", {"list": [1]})
    assert r.status == 400
    assert identify(sim, "u1", {"cio_subscription_preferences": {"topics": {}}}).status == 200
    r = identify(sim, "u1", {"id": "someone-else"})
    assert r.body == v1_error("id attribute and identifier are not the same value"), r
    assert identify(sim, "u1", {"id": "u1"}).status == 200
    assert identify(sim, "a@x.com", {"id": "u9"}).status == 200   # by email: may set id

    r = track(sim, "u1", {"name": "e", "data": [1, 2]})
    assert r.status == 400 and r.body == v1_error("event data must be a hash"), r
    for ev in ({}, {"name": "   "}, {"name": 5}, {"name": "e", "timestamp": "now"},
               {"name": "e", "timestamp": 1.5}, {"name": "e", "type": "click"},
               {"name": "x" * 101}):
        assert track(sim, "u1", ev).status == 400, ev
    assert track(sim, "u1", {"name": " " + "x" * 100 + " "}).status == 200
    assert len(sim.events) == 1


def test_v1_limits(sim):
    ok = identify(sim, "u1", {"myAttribute": "v" * 1000})
    assert ok.status == 200
    r = identify(sim, "u1", {"myAttribute": "v" * 1001})
    assert r.status == 400
    # byte-for-byte the body of customerio-node#29
    assert r.body == v1_error("value for attribute 'myAttribute' cannot be longer than "
                              "1000 bytes")
    assert identify(sim, "u1", {"e": "é" * 500}).status == 200       # 1000 bytes
    assert identify(sim, "u1", {"e": "é" * 501}).status == 400       # bytes, not chars
    assert identify(sim, "i" * 150, {"a": 1}).status == 200
    r = identify(sim, "i" * 151, {"a": 1})
    assert r.status == 400 and "150 bytes" in r.json()["meta"]["errors"][0]
    assert track(sim, "i" * 151, {"name": "e"}).status == 400
    assert identify(sim, "u1", {"n" * 150: 1}).status == 200
    assert identify(sim, "u1", {"n" * 151: 1}).status == 400
    assert identify(sim, "u2", {f"a{i}": i for i in range(300)}).status == 200
    assert identify(sim, "u2", {f"a{i}": i for i in range(301)}).status == 400
    assert track(sim, "u1", {"name": "e", "data": {"x": "y" * 100000}}).status == 400
    assert sim.profiles["u1"]["myAttribute"] == "v" * 1000
    assert "i" * 151 not in sim.profiles


# --------------------------------------------------------------------------- v2

def test_v2_batch_all_valid(sim):
    r = batch(sim, [
        person("u1", attributes={"has_open_ticket": True}),
        person("u1", "event", name="ticket_opened", id=ULID_A, timestamp=1768000000,
               attributes={"ticket": "1"}),
        {"type": "person", "identifiers": {"email": "b@x.com"}, "action": "identify",
         "attributes": {"plan": "pro"}},
        {"type": "person", "identifiers": {"cio_id": "a3000001"}, "action": "identify",
         "attributes": {"z": 1}},
    ])
    assert r.status == 200 and r.body == b"{}\n", r
    assert r.headers["content-type"] == CT
    assert sim.profiles == {"u1": {"has_open_ticket": True}, "b@x.com": {"plan": "pro"},
                            "cio_a3000001": {"z": 1}}
    (ident, ev), = sim.events
    assert ident == "u1" and ev["data"] == {"ticket": "1"} and ev["api"] == "v2"
    assert ev["name"] == "ticket_opened" and ev["timestamp"] == 1768000000


def test_v2_batch_207_partial(sim):
    ops = [
        person("u1", attributes={"a": 1}),
        {"type": "person", "identifiers": {"id": "u2", "email": "u2@x.com"},
         "action": "identify", "attributes": {"a": 2}},
        person("u3", "event", name="e3", id=ULID_A),
        person("u4", attributes={"big": "x" * 1001}),
        person("u5", "event", attributes={"no": "name"}),
        person("u6", "event", name="e6", attributes=[1]),
        person("u7", attributes={"a": 7}),
    ]
    r = batch(sim, ops)
    assert r.status == 207, r
    errs = r.json()["errors"]
    assert [e["batch_index"] for e in errs] == [1, 3, 4, 5]
    for e in errs:
        assert set(e) == {"batch_index", "reason", "field", "message"}
    assert errs[0]["message"] == "You cannot pass multiple identifiers."
    assert errs[1]["message"] == "value for attribute 'big' cannot be longer than 1000 bytes"
    assert errs[2]["field"] == "name" and errs[2]["reason"] == "required"
    assert errs[3]["message"] == "event data must be a hash"
    assert r.body.endswith(b"\n}\n") and b'\n  "errors": [\n' in r.body   # pretty-printed
    # the valid items are applied
    assert sim.profiles == {"u1": {"a": 1}, "u7": {"a": 7}}
    assert [(i, e["name"]) for i, e in sim.events] == [("u3", "e3")]

    sim.set_options(errors_on_200=True)
    r = batch(sim, [person("u8", attributes={"a": 8}), {"type": "person"}])
    assert r.status == 200 and r.json()["errors"][0]["batch_index"] == 1, r
    assert sim.profiles["u8"] == {"a": 8}


def test_v2_batch_malformed_is_400(sim):
    for body in (b"nope", b"[]", b'{"batch": {}}', b'{"items": []}'):
        r = call(sim, "POST", "/api/v2/batch", body)
        assert r.status == 400, (body, r)
        (e,), = [r.json()["errors"]]
        assert set(e) >= {"reason", "message"} and "batch_index" not in e


def test_event_id_dedupe(sim):
    for _ in range(2):
        assert track(sim, "u1", {"name": "e", "id": ULID_A}).status == 200
    r = batch(sim, [person("u1", "event", name="e", id=ULID_A),
                    person("u1", "event", name="e", id=ULID_B),
                    person("u1", "event", name="e", id=ULID_B),
                    person("u1", "event", name="no-id"),
                    person("u1", "event", name="no-id")])
    assert r.status == 200, r
    assert [e["id"] for _, e in sim.events] == [ULID_A, ULID_B, None, None]
    assert sim.event_duplicates == 3
    # a non-ULID id is accepted (like the real API) but noted
    assert track(sim, "u1", {"name": "e", "id": "u1"}).status == 200
    assert sim.non_ulid_event_ids == ["u1"]
    sim.set_options(strict_ulid=True)
    assert track(sim, "u1", {"name": "e", "id": "not-a-ulid"}).status == 400


def test_v2_size_limits(sim):
    # one item just under 32 kb passes, one over fails alone
    def sized(ident, n):
        op = person(ident, attributes={f"k{i}": "v" * 900 for i in range(n // 910)})
        return op
    small, big = sized("s", 31000), sized("b", 34000)
    assert len(json.dumps(small, separators=(",", ":"))) < 32000
    assert len(json.dumps(big, separators=(",", ":"))) > 32000
    r = batch(sim, [small, big])
    assert r.status == 207, r
    (e,), = [r.json()["errors"]]
    assert e["batch_index"] == 1 and e["reason"] == "too_large"
    assert "s" in sim.profiles and "b" not in sim.profiles

    # the whole body: > 500 kb is a 400, nothing applied
    ops = [person(f"p{i}", attributes={"v": "x" * 990}) for i in range(520)]
    body = json.dumps({"batch": ops}).encode()
    assert len(body) > 500000
    r = call(sim, "POST", "/api/v2/batch", body)
    assert r.status == 400, r
    assert r.json() == {"errors": [{"reason": "too_large", "field": "",
                                    "message": "request body cannot be larger than 500kb"}]}
    assert "p0" not in sim.profiles
    # the boundary, exactly: 500000 bytes pass, 500001 do not (padding is whitespace)
    body = json.dumps({"batch": ops[:450]}).encode()
    assert len(body) < 500000
    r = call(sim, "POST", "/api/v2/batch", body + b" " * (500001 - len(body)))
    assert r.status == 400 and "p0" not in sim.profiles, r
    r = call(sim, "POST", "/api/v2/batch", body + b" " * (500000 - len(body)))
    assert r.status == 200, r
    assert len(sim.profiles) == 451


def test_reject_identifier(sim):
    sim.reject_identifier("bad", message="The identifier is already associated with a "
                                         "different profile.")
    r = identify(sim, "bad", {"a": 1})
    assert r.status == 400
    assert r.body == v1_error("The identifier is already associated with a different "
                              "profile.")
    assert track(sim, "bad", {"name": "e"}).status == 400
    r = batch(sim, [person("ok", attributes={"a": 1}), person("bad", attributes={"a": 1})])
    assert r.status == 207 and r.json()["errors"][0]["batch_index"] == 1, r
    assert list(sim.profiles) == ["ok"] and sim.events == []
    sim.reject_identifier("down", status=500)
    assert identify(sim, "down", {"a": 1}).status == 500
    sim.unreject_identifier("bad")
    assert identify(sim, "bad", {"a": 1}).status == 200


def test_region_endpoint(sim):
    r = call(sim, "GET", "/api/v1/accounts/region")
    assert r.status == 200
    assert r.json() == {"url": "https://track.customer.io", "region": "us",
                        "environment_id": 3}
    assert call(sim, "GET", "/api/v1/accounts/region", authed=False).status == 401


# --------------------------------------------------------------------------- faults

def test_fail_next_429_then_success(sim):
    sim.fail_next(2)
    for _ in range(2):
        r = identify(sim, "u1", {"a": 1})
        assert r.status == 429, r
        assert "retry-after" not in r.headers
        assert not any(h.startswith("x-ratelimit") for h in r.headers)
    assert sim.profiles == {} and sim.identifies == []
    r = identify(sim, "u1", {"a": 1})
    assert r.status == 200
    assert sim.profiles == {"u1": {"a": 1}}
    assert [q["status"] for q in sim.requests] == [429, 429, 200]
    assert [q["fault"] for q in sim.requests] == ["fail_next", "fail_next", None]

    sim.fail_next(1, status=429, headers={"Retry-After": "1"}, body="slow down")
    r = batch(sim, [person("u2")])
    assert r.status == 429 and r.headers["retry-after"] == "1" and r.body == b"slow down"
    sim.fail_next(1, status=500)
    assert track(sim, "u1", {"name": "e"}).status == 500
    assert sim.events == []


def test_fail_for_outage(sim):
    sim.fail_for(0.4)
    t0 = time.monotonic()
    statuses = []
    while time.monotonic() - t0 < 0.3:
        statuses.append(identify(sim, "u1", {"a": 1}).status)
        time.sleep(0.05)
    assert statuses and set(statuses) == {503}
    wait_for(lambda: identify(sim, "u1", {"a": 1}).status == 200, timeout=2,
             what="outage to end")
    assert sim.profiles == {"u1": {"a": 1}}


def test_delay_next_makes_a_1s_client_time_out(sim):
    sim.delay_next(1, 1.4)
    req = urllib.request.Request(sim.url + "/api/v1/customers/u1", method="PUT",
                                 data=b'{"a": 1}', headers={"Authorization": auth()})
    t0 = time.monotonic()
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)) as ei:
        urllib.request.urlopen(req, timeout=1)
    assert 0.9 < time.monotonic() - t0 < 1.4
    if isinstance(ei.value, urllib.error.URLError):
        assert isinstance(ei.value.reason, (TimeoutError, socket.timeout))
    # applied at arrival: the client timed out but the state changed
    assert sim.profiles == {"u1": {"a": 1}}
    with urllib.request.urlopen(req, timeout=1) as r:      # the next one is fast
        assert r.status == 200 and r.read() == b"{}\n"


def test_drop_connection_next(sim):
    sim.drop_connection_next(1)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        identify(sim, "u1", {"a": 1})
    sim.drop_connection_next(1, reset=True)
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        identify(sim, "u1", {"a": 1})
    assert sim.profiles == {}
    assert identify(sim, "u1", {"a": 1}).status == 200
    assert [q["fault"] for q in sim.requests] == ["drop", "drop", None]
    assert [q["status"] for q in sim.requests] == [None, None, 200]


def test_request_times_include_rejected_requests(sim):
    t0 = time.time()
    identify(sim, "u1", {"a": 1}, authed=False)             # 401
    sim.fail_next(1)
    identify(sim, "u1", {"a": 1})                           # 429
    sim.drop_connection_next(1)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        identify(sim, "u1", {"a": 1})                       # dropped
    identify(sim, "u1", {"a": 1})                           # 200
    call(sim, "GET", "/_control/summary")                   # not API traffic
    times = sim.request_times()
    assert len(times) == 4
    assert times == sorted(times) and t0 <= times[0] <= times[-1] <= time.time()
    mono = sim.request_times(monotonic=True)
    assert len(mono) == 4 and mono == sorted(mono)
    assert sim.max_requests_in_window(10) == 4


def test_rate_limit_option(sim):
    sim.set_rate_limit(3, per_seconds=10)
    statuses = [identify(sim, "u1", {"a": i}).status for i in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    sim.set_rate_limit(None)
    assert identify(sim, "u1", {"a": 9}).status == 200


def test_reset(sim):
    identify(sim, "u1", {"a": 1})
    track(sim, "u1", {"name": "e", "id": ULID_A})
    sim.fail_next(5)
    sim.set_credentials("x", "y")
    sim.reset()
    assert (sim.requests, sim.identifies, sim.events, sim.profiles) == ([], [], [], {})
    assert track(sim, "u1", {"name": "e", "id": ULID_A}).status == 200   # creds restored
    assert len(sim.events) == 1 and sim.event_duplicates == 0


# --------------------------------------------------------------------------- transport

def test_keep_alive_and_chunked_bodies(sim):
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    try:
        for i in range(3):
            conn.request("PUT", "/api/v1/customers/u1", body=json.dumps({"n": i}).encode(),
                         headers={"Authorization": auth()})
            r = conn.getresponse()
            assert r.status == 200 and r.read() == b"{}\n"
        conn.request("POST", "/api/v2/batch", headers={"Authorization": auth()},
                     body=iter([b'{"batch":[', json.dumps(person("u2")).encode(), b"]}"]),
                     encode_chunked=True)
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b"{}\n"
    finally:
        conn.close()
    assert sim.profiles == {"u1": {"n": 2}, "u2": {}}


@pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")
def test_libcurl_client(sim):
    """suppressd talks with libcurl: USERPWD, Expect: 100-continue on a big body."""
    ops = [person(f"c{i}", attributes={"v": "x" * 900}) for i in range(40)]
    out = subprocess.run(
        ["curl", "-sS", "-u", f"{SITE}:{KEY}", "-H", "Content-Type: application/json",
         "-H", "Expect: 100-continue", "--data-binary", "@-", "-w", "\n%{http_code}",
         sim.url + "/api/v2/batch"],
        input=json.dumps({"batch": ops}).encode(), capture_output=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"{}\n\n200"
    assert len(sim.profiles) == 40


# --------------------------------------------------------------------------- control API

def control(sim, name, args=None):
    if args is None:
        return json.loads(urllib.request.urlopen(sim.url + "/_control/" + name,
                                                 timeout=5).read())
    req = urllib.request.Request(sim.url + "/_control/" + name, method="POST",
                                 data=json.dumps(args).encode())
    return json.loads(urllib.request.urlopen(req, timeout=5).read())


def test_http_control_api(sim):
    assert control(sim, "fail_next", {"n": 1, "status": 429}) == {"ok": True}
    assert identify(sim, "u1", {"a": 1}).status == 429
    control(sim, "reject", {"identifier": "bad", "message": "nope"})
    assert identify(sim, "bad", {"a": 1}).body == v1_error("nope")
    control(sim, "credentials", {"site_id": "s2", "api_key": "k2"})
    assert identify(sim, "u1", {"a": 1}).status == 401
    assert identify(sim, "u1", {"a": 1}, headers={"Authorization": auth("s2", "k2")}).status \
        == 200
    control(sim, "fail_for", {"seconds": 30, "status": 502})
    assert identify(sim, "u1", {"a": 2}).status == 502
    s = control(sim, "summary")
    assert s["requests"] == 5 and s["identifies"] == 1 and s["events"] == 0
    assert s["profiles"] == {"u1": {"a": 1}}
    assert len(s["request_times"]) == 5
    assert s["statuses"] == {"429": 1, "400": 1, "401": 1, "200": 1, "502": 1}
    reqs = control(sim, "requests")
    assert [q["status"] for q in reqs] == [429, 400, 401, 200, 502]
    assert reqs[0]["body"] == '{"a": 1}'
    control(sim, "reset", {})
    assert control(sim, "summary")["requests"] == 0
    assert identify(sim, "u1", {"a": 3}).status == 200     # outage and creds reset
    control(sim, "delay_next", {"n": 1, "seconds": 0.2})
    control(sim, "drop_next", {"n": 1})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        identify(sim, "u1", {"a": 4})
    t0 = time.monotonic()
    assert identify(sim, "u1", {"a": 4}).status == 200
    assert time.monotonic() - t0 >= 0.2
    control(sim, "options", {"create_on_update": False})
    assert identify(sim, "nobody", {"_update": True}).status == 200
    st = control(sim, "state")
    assert "nobody" not in st["profiles"] and st["update_misses"] == ["nobody"]
    with pytest.raises(urllib.error.HTTPError) as ei:
        control(sim, "no_such_thing", {})
    assert ei.value.code == 404


def test_runs_as_a_script():
    port = free_port()
    script = pathlib.Path(__file__).with_name("cio_sim.py")
    p = subprocess.Popen([sys.executable, str(script), "--port", str(port), "--site-id", "S",
                          "--api-key", "K"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = p.stdout.readline().decode()
        assert line.strip() == f"cio_sim listening on http://127.0.0.1:{port}"

        class Addr:
            pass
        a = Addr()
        a.port = port
        r = call(a, "PUT", "/api/v1/customers/u1", {"a": 1},
                 headers={"Authorization": auth("S", "K")})
        assert r.status == 200, r
        s = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/_control/summary",
                                              timeout=5).read())
        assert s["profiles"] == {"u1": {"a": 1}}
    finally:
        p.terminate()
        assert p.wait(timeout=5) == 0, p.stderr.read()
