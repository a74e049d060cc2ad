"""Tests of the Intercom REST API simulator itself (intercom_sim.py): in-process, fast,
no suppressd and no Redis."""
import http.client
import json
import math
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from harness import free_port, wait_for
from sim_http import http_call
from intercom_sim import IntercomSim, decode_cursor, encode_cursor, SearchError

TOKEN = "tok-1"
CT = "application/json; charset=utf-8"
T0 = 1768000000


@pytest.fixture
def sim():
    s = IntercomSim(token=TOKEN).start()
    s.add_contact("c1", external_id="u1", email="one@example.com")
    s.add_contact("c2", external_id="u2", email="two@example.com")
    s.add_contact("lead1", external_id="0a1b-lead-uuid", email="lead@example.com",
                  role="lead")
    yield s
    s.stop()


def call(sim, method, path, body=None, headers=None, authed=True, timeout=5,
         version="2.14"):
    h = {"Content-Type": "application/json", "Accept": "application/json"}
    if authed:
        h["Authorization"] = "Bearer " + TOKEN
    if version:
        h["Intercom-Version"] = version
    h.update(headers or {})
    return http_call(sim.port, method, path, body, h, timeout)


def event(sim, ev, **kw):
    return call(sim, "POST", "/events", ev, **kw)


def ev(name="email_opened", at=T0, **ident):
    out = {"event_name": name, "created_at": at}
    out.update(ident or {"user_id": "u1"})
    return out


def search(sim, kind, query, per_page=None, starting_after=None, **kw):
    pag = {}
    if per_page is not None:
        pag["per_page"] = per_page
    if starting_after is not None:
        pag["starting_after"] = starting_after
    body = {"query": query}
    if pag:
        body["pagination"] = pag
    return call(sim, "POST", f"/{kind}/search", body, **kw)


def assert_error_list(r, status, code, message=None):
    assert r.status == status, r
    assert r.headers["content-type"] == CT
    b = r.json()
    assert list(b) == ["type", "request_id", "errors"], b
    assert b["type"] == "error.list"
    assert re.fullmatch(r"[a-z0-9]{20}", b["request_id"]), b
    assert b["errors"] and all(set(e) <= {"code", "message", "field"} for e in b["errors"])
    assert code in [e["code"] for e in b["errors"]], b
    if message is not None:
        assert message in [e["message"] for e in b["errors"]], b
    return b["errors"]


STATE_OPEN = {"field": "state", "operator": "IN", "value": ["open", "snoozed"]}


def walk(sim, kind, query, per_page):
    """All pages of a search; returns (ids in order, list of page bodies)."""
    ids, bodies, cursor = [], [], None
    for _ in range(100):
        r = search(sim, kind, query, per_page=per_page, starting_after=cursor)
        assert r.status == 200, r
        b = r.json()
        bodies.append(b)
        ids += [o["id"] for o in b[kind]]
        nxt = b["pages"].get("next")
        if nxt is None:
            return ids, bodies
        cursor = nxt["starting_after"]
    raise AssertionError("search never ended")


# --------------------------------------------------------------------------- auth

def test_401_body_and_token_controls(sim):
    for kw in ({"authed": False},
               {"headers": {"Authorization": "Bearer wrong"}},
               {"headers": {"Authorization": "Basic " + TOKEN}},
               {"headers": {"Authorization": "Bearer"}}):
        r = event(sim, ev(), **kw)
        assert_error_list(r, 401, "unauthorized", "Access Token Invalid")
        assert r.json()["errors"] == [{"code": "unauthorized",
                                       "message": "Access Token Invalid"}]
    for path in ("/contacts/c1", "/conversations/1", "/tickets/1"):
        assert call(sim, "GET", path, authed=False).status == 401
    assert call(sim, "POST", "/conversations/search", {"query": STATE_OPEN},
                authed=False).status == 401
    assert sim.events == [] and sim.lookups == {}
    assert [q["status"] for q in sim.requests] == [401] * 8
    # request ids differ
    ids = {call(sim, "GET", "/contacts/c1", authed=False).json()["request_id"]
           for _ in range(3)}
    assert len(ids) == 3

    assert event(sim, ev(), headers={"authorization": "bearer " + TOKEN}).status == 202
    sim.set_token("new-token", reject_status=403)
    assert_error_list(event(sim, ev(at=T0 + 1)), 403, "unauthorized", "Access Token Invalid")
    assert event(sim, ev(at=T0 + 1), headers={"Authorization": "Bearer new-token"}).status \
        == 202
    sim.reset()
    assert event(sim, ev()).status == 404       # token restored; reset forgot the contacts


# --------------------------------------------------------------------------- events

def test_event_accepted_202_and_recorded(sim):
    body = {"event_name": "email_opened", "created_at": T0, "user_id": "u1",
            "metadata": {"campaign_id": 7, "subject": "Hi", "href": "https://x.example/a",
                         "order": {"url": "https://x.example/o/1", "value": "1"},
                         "price": {"amount": 2999, "currency": "usd"},
                         "sent_date": T0 - 5, "ok": True, "none": None}}
    r = event(sim, body)
    assert r.status == 202 and r.body == b"", r
    assert r.headers["content-length"] == "0" and "content-type" not in r.headers
    (e,) = sim.events
    assert e["event_name"] == "email_opened" and e["created_at"] == T0
    assert e["contact_id"] == "c1" and e["external_id"] == "u1"
    assert e["identified_by"] == "user_id" and e["user_id"] == "u1"
    assert e["metadata"] == body["metadata"] and e["dropped_metadata_keys"] == []
    assert e["intercom_version"] == "2.14" and e["body"] == body
    assert sim.requests[0]["intercom_version"] == "2.14"
    assert sim.requests[0]["headers"]["authorization"] == "Bearer " + TOKEN
    assert sim.requests[0]["json"] == body and sim.requests[0]["status"] == 202

    # by Intercom id (users and leads) and by email (users)
    assert event(sim, ev(at=T0 + 1, id="c2")).status == 202
    assert event(sim, ev(at=T0 + 2, id="lead1")).status == 202
    assert event(sim, ev(at=T0 + 3, email="two@example.com")).status == 202
    assert event(sim, ev(at=T0 + 4, user_id=42), version=None).status == 404  # no user 42
    sim.add_contact("c42", external_id="42")
    assert event(sim, ev(at=T0 + 4, user_id=42), version=None).status == 202
    assert [(x["contact_id"], x["identified_by"]) for x in sim.events[1:]] == \
        [("c2", "id"), ("lead1", "id"), ("c2", "email"), ("c42", "user_id")]
    assert sim.events[-1]["intercom_version"] is None
    assert sim.intercom_versions == {"2.14": 4, None: 2}
    assert [x["created_at"] for x in sim.events_for(user_id="u2")] == [T0 + 1, T0 + 3]
    assert len(sim.events_for(contact_id="lead1")) == 1
    assert len(sim.events_for(event_name="nope")) == 0


def test_event_unknown_users_are_404(sim):
    for ident in ({"user_id": "ghost"}, {"id": "no-such-contact"},
                  {"email": "ghost@example.com"},
                  # leads are found only by their Intercom id
                  {"user_id": "0a1b-lead-uuid"}, {"email": "lead@example.com"}):
        r = event(sim, ev(**ident))
        assert_error_list(r, 404, "not_found", "User Not Found")
    assert sim.events == []
    assert [x["status"] for x in sim.rejected_events] == [404] * 5
    sim.delete_contact("c1")
    assert event(sim, ev()).status == 404


def test_event_validation_400(sim):
    cases = [
        ({"created_at": T0, "user_id": "u1"}, "parameter_not_found", "event_name"),
        ({"event_name": "", "created_at": T0, "user_id": "u1"}, "parameter_invalid",
         "event_name"),
        ({"event_name": 5, "created_at": T0, "user_id": "u1"}, "parameter_invalid",
         "event_name"),
        ({"event_name": "e", "user_id": "u1"}, "parameter_not_found", "created_at"),
        ({"event_name": "e", "created_at": 1.5, "user_id": "u1"}, "type_mismatch",
         "created_at"),
        ({"event_name": "e", "created_at": str(T0), "user_id": "u1"}, "type_mismatch",
         "created_at"),
        ({"event_name": "e", "created_at": True, "user_id": "u1"}, "type_mismatch",
         "created_at"),
        ({"event_name": "e", "created_at": T0}, "parameter_not_found", None),
        ({"event_name": "e", "created_at": T0, "user_id": "u1", "email": "one@example.com"},
         "parameter_invalid", None),
        ({"event_name": "e", "created_at": T0, "user_id": ""}, "type_mismatch", "user_id"),
        ({"event_name": "e", "created_at": T0, "user_id": "u1", "metadata": [1]},
         "parameter_invalid", "metadata"),
        ({"event_name": "e", "created_at": T0, "user_id": "u1",
          "metadata": {"a": 1, "nested": {"b": 2}}}, "parameter_invalid", "metadata.nested"),
        ({"event_name": "e", "created_at": T0, "user_id": "u1",
          "metadata": {"tags": ["x", "y"]}}, "parameter_invalid", "metadata.tags"),
        ({"event_name": "e", "created_at": T0, "user_id": "u1",
          "metadata": {"price": {"amount": "29.99", "currency": "usd"}}},
         "parameter_invalid", "metadata.price"),
    ]
    for body, code, field in cases:
        r = event(sim, body)
        errs = assert_error_list(r, 400, code)
        assert all(e["message"] for e in errs)
        if field is not None:
            assert field in [e.get("field") for e in errs], (body, errs)
    nested = sim.rejected_events[11]
    assert "nested" in nested["errors"][0]["message"]
    assert "nested" in nested["body"]
    for raw in (b"not json", b"", b"[1]", b'{"event_name": NaN}'):
        assert event(sim, raw).status == 400, raw
    assert sim.events == [] and len(sim.rejected_events) == len(cases) + 4
    # several problems are listed together
    errs = assert_error_list(event(sim, {"metadata": {"x": {"y": 1}}}), 400,
                             "parameter_not_found")
    assert len(errs) == 4


def test_event_metadata_first_10_keys_kept(sim):
    meta = {f"k{i:02d}": i for i in range(13)}
    meta["long"] = "x" * 256
    r = event(sim, dict(ev(), metadata=meta))
    assert r.status == 202, r
    (e,) = sim.events
    assert list(e["metadata"]) == [f"k{i:02d}" for i in range(10)]
    assert e["dropped_metadata_keys"] == ["k10", "k11", "k12", "long"]
    assert e["metadata_sent"] == meta
    assert e["long_metadata_keys"] == ["long"]
    # the order sent decides, not the names
    meta2 = {"z": 1, "a": 2}
    meta2.update({f"m{i}": i for i in range(9)})
    assert event(sim, dict(ev(at=T0 + 1), metadata=meta2)).status == 202
    assert list(sim.events[1]["metadata"])[:2] == ["z", "a"]
    assert sim.events[1]["dropped_metadata_keys"] == ["m8"]


def test_event_dedupe(sim):
    for _ in range(3):
        assert event(sim, dict(ev(), metadata={"n": 1})).status == 202
    assert event(sim, ev(id="c1")).status == 202                 # same contact via id
    assert event(sim, ev(email="one@example.com")).status == 202
    assert event(sim, ev(at=T0 + 1)).status == 202               # other second: new
    assert event(sim, ev(name="other")).status == 202            # other name: new
    assert event(sim, ev(user_id="u2")).status == 202            # other user: new
    assert [(e["contact_id"], e["event_name"], e["created_at"]) for e in sim.events] == \
        [("c1", "email_opened", T0), ("c1", "email_opened", T0 + 1),
         ("c1", "other", T0), ("c2", "email_opened", T0)]
    assert sim.event_duplicates == 4 == len(sim.duplicates)
    assert [d["identified_by"] for d in sim.duplicates] == ["user_id", "user_id", "id",
                                                            "email"]


# --------------------------------------------------------------------------- contacts

def test_get_contact(sim):
    r = call(sim, "GET", "/contacts/c1")
    assert r.status == 200 and r.headers["content-type"] == CT, r
    c = r.json()
    assert {k: c[k] for k in ("type", "id", "external_id", "email", "role")} == \
        {"type": "contact", "id": "c1", "external_id": "u1", "email": "one@example.com",
         "role": "user"}
    assert isinstance(c["created_at"], int) and c["workspace_id"]
    assert c["tags"]["url"] == "/contacts/c1/tags"
    lead = call(sim, "GET", "/contacts/lead1").json()
    assert lead["role"] == "lead" and lead["external_id"] == "0a1b-lead-uuid"
    assert_error_list(call(sim, "GET", "/contacts/nobody"), 404, "not_found",
                      "User Not Found")
    call(sim, "GET", "/contacts/c1")
    assert sim.lookups == {"c1": 2, "lead1": 1, "nobody": 1}
    made = sim.add_contact(None, external_id=None, role="lead", name="Anon",
                           custom_attributes={"plan": "pro"})
    got = call(sim, "GET", "/contacts/" + made["id"]).json()
    assert re.fullmatch(r"[0-9a-f]{24}", got["id"]) and got["external_id"] is None
    assert got["name"] == "Anon" and got["custom_attributes"] == {"plan": "pro"}
    with pytest.raises(ValueError):
        sim.add_contact("x", role="visitor")


# --------------------------------------------------------------------------- objects

def test_conversation_and_ticket_objects(sim):
    conv = sim.add_conversation("c1", created_at=T0, priority="priority")
    r = call(sim, "GET", "/conversations/" + conv["id"])
    assert r.status == 200, r
    c = r.json()
    assert c["type"] == "conversation" and c["id"] == conv["id"]
    assert c["id"].isdigit() and c["created_at"] == c["updated_at"] == T0
    assert (c["state"], c["open"], c["priority"]) == ("open", True, "priority")
    assert c["contacts"] == {"type": "contact.list", "contacts": [
        {"type": "contact", "id": "c1", "external_id": "u1"}]}
    assert c["source"]["author"] == {"type": "user", "id": "c1", "name": None,
                                     "email": "one@example.com"}
    assert c["conversation_parts"]["type"] == "conversation_part.list"
    assert c["tags"] == {"type": "tag.list", "tags": []}

    # contacts the sim does not know, and verbatim references
    other = sim.add_conversation(["zz", {"id": "c9", "role": "lead"}], state="snoozed")
    assert other["contacts"]["contacts"] == [
        {"type": "contact", "id": "zz", "external_id": None}, {"id": "c9", "role": "lead"}]
    assert (other["state"], other["open"]) == ("snoozed", True) and other["snoozed_until"]

    closed = sim.close_conversation(conv["id"])
    assert (closed["state"], closed["open"]) == ("closed", False)
    assert closed["updated_at"] > T0
    again = sim.set_conversation_state(conv["id"], "open", at=closed["updated_at"] + 50)
    assert again["updated_at"] == closed["updated_at"] + 50 and again["open"] is True
    upd = sim.update_conversation(conv["id"], conversation_rating={"rating": 5})
    assert upd["conversation_rating"] == {"rating": 5}
    assert upd["updated_at"] == again["updated_at"] + 1

    t = sim.add_ticket("c2", created_at=T0)
    r = call(sim, "GET", "/tickets/" + t["id"])
    assert r.status == 200, r
    tb = r.json()
    assert tb["type"] == "ticket" and tb["ticket_id"].isdigit() and tb["open"] is True
    assert tb["ticket_state"] == {"type": "ticket_state", "id": "4517893",
                                  "category": "submitted", "internal_label": "Submitted",
                                  "external_label": "Submitted"}
    assert tb["contacts"]["contacts"] == [{"type": "contact", "id": "c2",
                                           "external_id": "u2"}]
    assert tb["admin_assignee_id"] == "0" and tb["category"] == "Customer"
    assert tb["ticket_parts"]["type"] == "ticket_part.list"
    res = sim.set_ticket_state(t["id"], "resolved")
    assert res["open"] is False and res["ticket_state"]["id"] == "4517896"
    assert sim.set_ticket_state(t["id"], "in_progress")["open"] is True
    assert sim.ticket(t["id"])["ticket_state"]["category"] == "in_progress"

    assert sim.delete_conversation(conv["id"]) is True
    assert_error_list(call(sim, "GET", "/conversations/" + conv["id"]), 404, "not_found",
                      "Resource Not Found")
    assert sim.delete_ticket(t["id"]) is True
    assert_error_list(call(sim, "GET", "/tickets/" + t["id"]), 404, "not_found")
    assert call(sim, "GET", "/tickets/999").status == 404
    assert sim.conversation_gets == {conv["id"]: 2}
    assert sim.ticket_gets == {t["id"]: 2, "999": 1}
    with pytest.raises(KeyError):
        sim.close_conversation("nope")
    with pytest.raises(ValueError):
        sim.add_conversation("c1", state="resolved")
    # unknown routes and methods
    assert_error_list(call(sim, "GET", "/nope"), 404, "not_found")
    assert call(sim, "GET", "/events").status == 404
    assert call(sim, "DELETE", "/contacts/c1").status == 404


# --------------------------------------------------------------------------- searches

def test_conversation_search_paging(sim):
    states = ["open", "closed", "snoozed"]
    convs = [sim.add_conversation("c1" if i % 2 else "c2", state=states[i % 3],
                                  created_at=T0 + i // 2)
             for i in range(45)]
    want = [c["id"] for c in convs if c["state"] != "closed"]       # 30
    ids, bodies = walk(sim, "conversations", STATE_OPEN, per_page=12)
    assert ids == want
    assert [b["pages"]["page"] for b in bodies] == [1, 2, 3]
    for b in bodies:
        assert b["type"] == "conversation.list" and b["total_count"] == 30
        assert b["pages"]["type"] == "pages" and b["pages"]["per_page"] == 12
        assert b["pages"]["total_pages"] == 3
        assert all(o["state"] in ("open", "snoozed") for o in b["conversations"])
        assert all("conversation_parts" not in o for o in b["conversations"])
    assert list(bodies[0]["pages"]) == ["type", "page", "next", "per_page", "total_pages"]
    assert bodies[0]["pages"]["next"]["page"] == 2
    assert bodies[0]["pages"]["next"]["starting_after"].startswith("Wz")
    assert "next" not in bodies[-1]["pages"] and len(bodies[-1]["conversations"]) == 6
    pages = sim.pages_served("conversations")
    assert [(p["page"], len(p["ids"]), p["next"] is not None) for p in pages] == \
        [(1, 12, True), (2, 12, True), (3, 6, False)]
    assert pages[1]["starting_after"] == pages[0]["next"]
    assert pages[0]["query"] == STATE_OPEN and sim.pages_served("tickets") == []

    # the default page size is 20; "=" and compound queries
    r = search(sim, "conversations", {"field": "state", "operator": "=", "value": "open"})
    b = r.json()
    assert b["total_count"] == 15 and len(b["conversations"]) == 15
    assert b["pages"]["per_page"] == 20 and "next" not in b["pages"]
    q = {"operator": "OR", "value": [{"field": "state", "operator": "=", "value": "open"},
                                     {"field": "state", "operator": "=", "value": "snoozed"}]}
    assert walk(sim, "conversations", q, per_page=150)[0] == want
    q = {"operator": "AND", "value": [
        {"field": "state", "operator": "NIN", "value": ["closed"]},
        {"operator": "OR", "value": [
            {"field": "contact_ids", "operator": "=", "value": "c1"},
            {"field": "created_at", "operator": ">", "value": T0 + 20}]}]}
    got = walk(sim, "conversations", q, per_page=7)[0]
    assert got == [c["id"] for c in convs if c["state"] != "closed" and
                   (c["contacts"]["contacts"][0]["id"] == "c1" or c["created_at"] >= T0 + 20)]
    q = {"field": "created_at", "operator": "<", "value": T0 + 1}          # inclusive
    assert search(sim, "conversations", q).json()["total_count"] == 4
    assert search(sim, "conversations", {"field": "state", "operator": "!=",
                                         "value": "closed"}).json()["total_count"] == 30
    assert search(sim, "conversations", {"field": "open", "operator": "=",
                                         "value": False}).json()["total_count"] == 15
    # an empty result
    b = search(sim, "conversations", {"field": "id", "operator": "=", "value": "0"}).json()
    assert b["conversations"] == [] and b["total_count"] == 0
    assert b["pages"] == {"type": "pages", "page": 1, "per_page": 20, "total_pages": 0}


def test_search_resume_from_saved_cursor(sim):
    convs = [sim.add_conversation("c1", created_at=T0 + i) for i in range(10)]
    r1 = search(sim, "conversations", STATE_OPEN, per_page=4).json()
    saved = r1["pages"]["next"]["starting_after"]
    first = [o["id"] for o in r1["conversations"]]
    assert first == [c["id"] for c in convs[:4]]
    # the same position gives the same cursor, and the cursor replays the same page
    again = search(sim, "conversations", STATE_OPEN, per_page=4).json()
    assert again["pages"]["next"]["starting_after"] == saved
    p2 = search(sim, "conversations", STATE_OPEN, per_page=4, starting_after=saved).json()
    p2b = search(sim, "conversations", STATE_OPEN, per_page=4, starting_after=saved).json()
    assert p2 == p2b and p2["pages"]["page"] == 2
    assert [o["id"] for o in p2["conversations"]] == [c["id"] for c in convs[4:8]]

    # the world changes while the client is away; resuming continues after convs[3]
    sim.close_conversation(convs[1]["id"])           # already seen
    sim.close_conversation(convs[5]["id"])           # not yet seen: now excluded
    sim.delete_conversation(convs[6]["id"])
    early = sim.add_conversation("c2", created_at=T0 - 100)   # sorts before the cursor
    late = sim.add_conversation("c2", created_at=T0 + 50)
    rest, bodies = [], []
    cursor = saved
    while cursor:
        b = search(sim, "conversations", STATE_OPEN, per_page=4,
                   starting_after=cursor).json()
        bodies.append(b)
        rest += [o["id"] for o in b["conversations"]]
        cursor = b["pages"].get("next", {}).get("starting_after")
    assert rest == [convs[i]["id"] for i in (4, 7, 8, 9)] + [late["id"]]
    assert early["id"] not in rest and not set(rest) & set(first)
    assert [b["pages"]["page"] for b in bodies] == [2, 3]
    assert bodies[0]["total_count"] == 9           # 10 - 2 closed - 1 deleted + 2 new
    assert bodies[0]["pages"]["total_pages"] == 3


def test_ticket_search(sim):
    cats = ["submitted", "in_progress", "waiting_on_customer", "resolved"]
    tickets = [sim.add_ticket("c1", category=cats[i % 4], created_at=T0 + i)
               for i in range(20)]
    not_resolved = [t["id"] for t in tickets if t["ticket_state"]["category"] != "resolved"]
    q = {"field": "state", "operator": "!=", "value": "resolved"}
    ids, bodies = walk(sim, "tickets", q, per_page=6)
    assert ids == not_resolved
    assert bodies[0]["type"] == "ticket.list" and bodies[0]["total_count"] == 15
    assert [b["pages"]["page"] for b in bodies] == [1, 2, 3]
    assert all(t["ticket_state"]["type"] == "ticket_state" and "ticket_parts" not in t
               for b in bodies for t in b["tickets"])
    q_nin = {"field": "state", "operator": "NIN", "value": ["resolved"]}
    assert walk(sim, "tickets", q_nin, per_page=150)[0] == not_resolved
    q_in = {"field": "state", "operator": "IN", "value": ["submitted", "in_progress"]}
    assert search(sim, "tickets", q_in).json()["total_count"] == 10
    q_eq = {"field": "state", "operator": "=", "value": "waiting_on_customer"}
    assert search(sim, "tickets", q_eq).json()["total_count"] == 5
    sim.set_ticket_state(tickets[0]["id"], "resolved")
    assert search(sim, "tickets", q).json()["total_count"] == 14
    assert search(sim, "tickets", {"field": "open", "operator": "=",
                                   "value": True}).json()["total_count"] == 14
    # a conversation cursor is not a ticket cursor
    for i in range(3):
        sim.add_conversation("c1")
    conv_cursor = search(sim, "conversations", STATE_OPEN,
                         per_page=1).json()["pages"]["next"]["starting_after"]
    assert_error_list(search(sim, "tickets", q, starting_after=conv_cursor), 400,
                      "parameter_invalid")
    assert_error_list(search(sim, "tickets", {"field": "state", "operator": "=",
                                              "value": "closed"}), 400, "parameter_invalid")


def test_search_validation(sim):
    sim.add_conversation("c1")
    bad = [
        ({"query": {"field": "state", "operator": "~", "value": "open"}}, "parameter_invalid"),
        ({"query": {"field": "title", "operator": "=", "value": "x"}}, "parameter_invalid"),
        ({"query": {"field": "state", "operator": "=", "value": "resolved"}},
         "parameter_invalid"),
        ({"query": {"field": "state", "operator": "IN", "value": "open"}},
         "parameter_invalid"),
        ({"query": {"field": "state", "operator": "IN", "value": []}}, "parameter_invalid"),
        ({"query": {"field": "state", "operator": "=", "value": ["open"]}},
         "parameter_invalid"),
        ({"query": {"field": "state", "operator": ">", "value": "open"}},
         "parameter_invalid"),
        ({"query": {"field": "created_at", "operator": ">", "value": "yesterday"}},
         "type_mismatch"),
        ({"query": {"field": "open", "operator": "=", "value": "true"}}, "type_mismatch"),
        ({"query": {"field": "state", "operator": "="}}, "parameter_not_found"),
        ({"query": {"operator": "XOR", "value": [STATE_OPEN]}}, "parameter_invalid"),
        ({"query": {"operator": "AND", "value": []}}, "parameter_invalid"),
        ({"query": {"operator": "AND", "value": [STATE_OPEN] * 16}}, "parameter_invalid"),
        ({"query": {"operator": "AND", "value": [{"operator": "OR", "value": [
            {"operator": "AND", "value": [STATE_OPEN]}]}]}}, "parameter_invalid"),
        ({"pagination": {"per_page": 5}}, "parameter_not_found"),
        ({"query": STATE_OPEN, "pagination": {"per_page": 151}}, "parameter_invalid"),
        ({"query": STATE_OPEN, "pagination": {"per_page": 0}}, "parameter_invalid"),
        ({"query": STATE_OPEN, "pagination": {"per_page": "5"}}, "parameter_invalid"),
        ({"query": STATE_OPEN, "pagination": {"starting_after": "garbage!"}},
         "parameter_invalid"),
        ({"query": STATE_OPEN, "pagination": {"starting_after": "WzFd"}},   # "[1]"
         "parameter_invalid"),
        ({"query": STATE_OPEN, "pagination": []}, "parameter_invalid"),
    ]
    for body, code in bad:
        assert_error_list(call(sim, "POST", "/conversations/search", body), 400, code)
    assert call(sim, "POST", "/conversations/search", b"{").status == 400
    # 15 filters and 2 levels are fine; per_page 150 and 1 too
    ok = [{"query": {"operator": "AND", "value": [STATE_OPEN] * 15}},
          {"query": {"operator": "AND", "value": [{"operator": "OR", "value": [STATE_OPEN]}]}},
          {"query": STATE_OPEN, "pagination": {"per_page": 150}},
          {"query": STATE_OPEN, "pagination": {"per_page": 1, "starting_after": None}}]
    for body in ok:
        r = call(sim, "POST", "/conversations/search", body)
        assert r.status == 200 and r.json()["total_count"] == 1, (body, r)
    assert len(sim.search_pages) == 4


def test_cursor_codec():
    c = encode_cursor("tickets", T0, "215472629300001", 3)
    assert c.startswith("Wz") and c == encode_cursor("tickets", T0, "215472629300001", 3)
    key, page = decode_cursor("tickets", c)
    assert page == 3 and key[0] == T0
    with pytest.raises(SearchError):
        decode_cursor("conversations", c)
    with pytest.raises(SearchError):
        decode_cursor("tickets", c[:-3])


# --------------------------------------------------------------------------- faults

def test_fail_next_with_path_prefix_and_defaults(sim):
    sim.fail_next(2, 500, path_prefix="/contacts/")
    assert event(sim, ev()).status == 202                    # not matched
    r = call(sim, "GET", "/contacts/c1")
    assert_error_list(r, 500, "server_error")
    assert call(sim, "GET", "/contacts/c1").status == 500
    assert call(sim, "GET", "/contacts/c1").status == 200
    assert sim.lookups == {"c1": 1}                          # faults are not processed
    assert [q["fault"] for q in sim.requests] == [None, "fail_next", "fail_next", None]

    t = time.time()
    sim.fail_next(1, 429)
    r = event(sim, ev(at=T0 + 1))
    assert_error_list(r, 429, "rate_limit_exceeded")
    assert r.headers["x-ratelimit-limit"] == "166" and r.headers["x-ratelimit-remaining"] == "0"
    assert t < int(r.headers["x-ratelimit-reset"]) <= t + 2
    sim.fail_next(1, 429, headers={})
    r = event(sim, ev(at=T0 + 1))
    assert r.status == 429 and not any(h.startswith("x-ratelimit") for h in r.headers)
    sim.fail_next(1, 503, headers={"Retry-After": "2"}, body="down")
    r = event(sim, ev(at=T0 + 1))
    assert r.status == 503 and r.body == b"down" and r.headers["retry-after"] == "2"
    sim.fail_next(1, 403)
    assert_error_list(event(sim, ev(at=T0 + 1)), 403, "unauthorized", "Access Token Invalid")
    sim.fail_next(1, 404, body={"type": "error.list", "errors": []})
    assert event(sim, ev(at=T0 + 1)).json() == {"type": "error.list", "errors": []}
    assert len(sim.events) == 1
    assert event(sim, ev(at=T0 + 1)).status == 202


def test_fail_for_outage(sim):
    sim.fail_for(0.4, 503, path_prefix="/events")
    assert_error_list(event(sim, ev()), 503, "service_unavailable")
    assert call(sim, "GET", "/contacts/c1").status == 200
    wait_for(lambda: event(sim, ev()).status == 202, timeout=2, what="outage to end")
    assert len(sim.events) == 1


def test_delay_next_makes_a_client_time_out(sim):
    sim.delay_next(0.8, path_prefix="/events")
    assert call(sim, "GET", "/contacts/c1").status == 200   # not delayed
    t0 = time.monotonic()
    with pytest.raises((TimeoutError, socket.timeout)):
        event(sim, ev(), timeout=0.4)
    assert 0.35 < time.monotonic() - t0 < 0.8
    assert len(sim.events) == 1                             # applied at arrival
    t0 = time.monotonic()
    assert event(sim, ev(at=T0 + 1)).status == 202          # the next one is fast
    assert time.monotonic() - t0 < 0.3
    sim.delay_next(0.2, process_first=False)
    assert event(sim, ev(at=T0 + 2)).status == 202
    assert [q["delay"] for q in sim.requests] == [0.0, 0.8, 0.0, 0.2]


def test_drop_connection_next(sim):
    sim.drop_connection_next()
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        event(sim, ev())
    sim.drop_connection_next(1, reset=True, path_prefix="/events")
    assert call(sim, "GET", "/contacts/c1").status == 200
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        event(sim, ev())
    assert sim.events == []
    assert event(sim, ev()).status == 202
    assert [q["fault"] for q in sim.requests] == ["drop", None, "drop", None]
    assert [q["status"] for q in sim.requests] == [None, 200, None, 202]


def test_rate_limit_headers_and_reset(sim):
    for _ in range(3):                                 # a busy machine may cross a boundary
        sim.reset()
        sim.add_contact("c1", external_id="u1")
        sim.rate_limit(3, window_s=1)
        now = time.time()
        time.sleep(math.ceil(now) - now + 0.02)        # start right after a window boundary
        start = math.floor(time.time())
        rs = [event(sim, ev(at=T0 + i)) for i in range(5)]
        if time.time() < start + 1:
            break
    assert [r.status for r in rs] == [202, 202, 202, 429, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in rs] == ["2", "1", "0", "0", "0"]
    assert {r.headers["x-ratelimit-limit"] for r in rs} == {"3"}
    assert {r.headers["x-ratelimit-reset"] for r in rs} == {str(start + 1)}
    errs = assert_error_list(rs[3], 429, "rate_limit_exceeded",
                             "Exceeded rate limit of 3 in 1_seconds")
    assert len(errs) == 1
    assert len(sim.events) == 3
    assert [q["fault"] for q in sim.requests][3:] == ["rate_limit", "rate_limit"]
    # 401s do not use the budget; after Reset the budget is back
    assert event(sim, ev(), authed=False).status == 401
    wait_for(lambda: time.time() >= start + 1, timeout=2, what="window end")
    r = call(sim, "GET", "/contacts/c1")
    assert r.status == 200 and r.headers["x-ratelimit-remaining"] == "2"
    sim.rate_limit(None)
    r = call(sim, "GET", "/contacts/c1")
    assert r.status == 200 and "x-ratelimit-limit" not in r.headers
    assert sim.max_requests_in_window(10) == len(sim.requests)


def test_reset_and_summary(sim):
    sim.add_conversation("c1")
    event(sim, ev())
    event(sim, ev())
    call(sim, "GET", "/contacts/c1")
    search(sim, "conversations", STATE_OPEN)
    s = sim.summary()
    assert s["requests"] == 4 and s["events"] == 1 and s["event_duplicates"] == 1
    assert s["lookups"] == {"c1": 1} and s["search_pages"] == 1
    assert s["statuses"] == {"202": 2, "200": 2} and s["intercom_versions"] == {"2.14": 4}
    snap = sim.snapshot()
    assert len(snap["conversations"]) == 1 and set(snap["contacts"]) == {"c1", "c2", "lead1"}
    sim.fail_next(3)
    sim.rate_limit(1)
    sim.set_token("other")
    sim.reset()
    assert (sim.requests, sim.events, sim.duplicates, sim.search_pages) == ([], [], [], [])
    assert sim.contacts == {} and sim.conversations == {} and sim.event_duplicates == 0
    sim.add_contact("c1", external_id="u1")
    assert event(sim, ev()).status == 202                   # token, faults, limit reset
    assert event(sim, ev()).status == 202 and len(sim.events) == 1


# --------------------------------------------------------------------------- transport

def test_keep_alive_and_chunked_bodies(sim):
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    h = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
    try:
        for i in range(3):
            conn.request("POST", "/events", body=json.dumps(ev(at=T0 + i)).encode(),
                         headers=h)
            r = conn.getresponse()
            assert r.status == 202 and r.read() == b""
        conn.request("POST", "/events", headers=h, encode_chunked=True,
                     body=iter([b'{"event_name":"chunked",', b'"created_at":1,',
                                b'"user_id":"u2"}']))
        r = conn.getresponse()
        assert r.status == 202 and r.read() == b""
        conn.request("GET", "/contacts/c2", headers=h)
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["id"] == "c2"
    finally:
        conn.close()
    assert [e["event_name"] for e in sim.events] == ["email_opened"] * 3 + ["chunked"]


@pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")
def test_libcurl_client(sim):
    out = subprocess.run(
        ["curl", "-sS", "-H", "Authorization: Bearer " + TOKEN,
         "-H", "Content-Type: application/json", "-H", "Intercom-Version: 2.14",
         "--data-binary", "@-", "-w", "%{http_code}", sim.url + "/events"],
        input=json.dumps(ev()).encode(), capture_output=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"202"
    assert sim.events[0]["intercom_version"] == "2.14"


# --------------------------------------------------------------------------- control API

def control(url, name, args=None):
    if args is None:
        return json.loads(urllib.request.urlopen(url + "/_control/" + name,
                                                 timeout=5).read())
    req = urllib.request.Request(url + "/_control/" + name, method="POST",
                                 data=json.dumps(args).encode())
    return json.loads(urllib.request.urlopen(req, timeout=5).read())


def test_http_control_api(sim):
    u = sim.url
    assert control(u, "contacts", {"contacts": [{"id": "c7", "external_id": "u7"},
                                                {"id": "c8", "role": "lead"}]}) == \
        {"ok": True, "count": 2}
    assert control(u, "contacts", {"id": "c9", "email": "nine@example.com"})["count"] == 1
    objs = control(u, "conversations", {"conversations": [
        {"contact": "c7", "created_at": T0}, {"contact": "c8", "state": "snoozed"}]})["objects"]
    assert [o["state"] for o in objs] == ["open", "snoozed"]
    assert objs[0]["contacts"]["contacts"][0]["external_id"] == "u7"
    (t,) = control(u, "tickets", {"contacts": ["c7"], "category": "in_progress"})["objects"]
    control(u, "conversation_state", {"id": objs[0]["id"], "state": "closed"})
    control(u, "ticket_state", {"id": t["id"], "category": "resolved"})
    assert sim.conversation(objs[0]["id"])["open"] is False
    assert sim.ticket(t["id"])["open"] is False
    assert control(u, "delete", {"kind": "conversation", "id": objs[1]["id"]})["deleted"]
    assert event(sim, ev(user_id="u7")).status == 202
    assert event(sim, ev(email="nine@example.com")).status == 202

    control(u, "fail_next", {"n": 1, "status": 500, "path_prefix": "/contacts"})
    assert event(sim, ev(at=T0 + 1, user_id="u7")).status == 202
    assert call(sim, "GET", "/contacts/c7").status == 500
    control(u, "token", {"token": "t2"})
    assert event(sim, ev()).status == 401
    control(u, "token", {"token": TOKEN, "reject_status": 403})
    control(u, "rate_limit", {"limit": 1, "window_s": 60})
    r1, r2 = call(sim, "GET", "/contacts/c7"), call(sim, "GET", "/contacts/c7")
    assert (r1.status, r2.status) == (200, 429)
    control(u, "rate_limit", {"limit": None})
    control(u, "delay_next", {"seconds": 0.2})
    t0 = time.monotonic()
    assert call(sim, "GET", "/contacts/c7").status == 200
    assert time.monotonic() - t0 >= 0.2
    control(u, "drop_next", {"n": 1})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        call(sim, "GET", "/contacts/c7")
    control(u, "fail_for", {"seconds": 30, "status": 502})
    assert call(sim, "GET", "/contacts/c7").status == 502

    s = control(u, "summary")
    assert s["events"] == 3 and s["lookups"] == {"c7": 2}    # the 429 and faults: no
    assert s["statuses"] == {"202": 3, "500": 1, "401": 1, "200": 2, "429": 1, "None": 1,
                             "502": 1}
    st = control(u, "state")
    assert [e["external_id"] for e in st["events"]] == ["u7", None, "u7"]
    assert set(st["tickets"]) == {t["id"]}
    reqs = control(u, "requests")
    assert reqs[0]["path"] == "/events" and json.loads(reqs[0]["body"])["user_id"] == "u7"
    assert reqs[0]["intercom_version"] == "2.14"
    control(u, "reset", {})
    assert control(u, "summary")["requests"] == 0
    assert call(sim, "GET", "/contacts/c1").status == 404     # no outage, contacts gone
    for bad in (("no_such_thing", {}), ("ticket_state", {"id": "x", "category": "nope"}),
                ("delete", {"kind": "planet", "id": "1"})):
        with pytest.raises(urllib.error.HTTPError) as ei:
            control(u, *bad)
        assert ei.value.code in (400, 404)


def test_runs_as_a_script():
    port = free_port()
    script = pathlib.Path(__file__).with_name("intercom_sim.py")
    p = subprocess.Popen([sys.executable, str(script), "--port", str(port), "--token", "T",
                          "--seed-users", "3"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = p.stdout.readline().decode()
        assert line.strip() == f"intercom_sim listening on http://127.0.0.1:{port}"

        class Addr:
            pass
        a = Addr()
        a.port = port
        r = call(a, "POST", "/events", ev(user_id="u2"), headers={"Authorization": "Bearer T"})
        assert r.status == 202, r
        r = call(a, "GET", "/contacts/c0", headers={"Authorization": "Bearer T"})
        assert r.json()["external_id"] == "u0" and r.json()["email"] == "u0@example.com"
        s = control(f"http://127.0.0.1:{port}", "summary")
        assert s["events"] == 1 and s["lookups"] == {"c0": 1}
        control(f"http://127.0.0.1:{port}", "reset", {})
        r = call(a, "GET", "/contacts/c2", headers={"Authorization": "Bearer T"})
        assert r.status == 200                                  # seeded again
    finally:
        p.terminate()
        assert p.wait(timeout=5) == 0, p.stderr.read()
