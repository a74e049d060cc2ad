"""What reaches Customer.io for a real support story: the identify attributes (values,
types, _update, _timestamp) and the seed events (names, ULID ids, Intercom's own event
times, properties), with HTTP Basic auth, through /api/v2/batch (the default) and through
the v1 endpoints (CIO_API=v1, percent-encoded ids). intercom: identities never leave."""
import re
import time
import urllib.parse

import pytest

from harness import wait_for
from sync_helpers import (ULID, api_requests, basic_auth, churn_tag, cio_env,
                          close_conversation, identifies_of, new_contact, open_conversation,
                          open_ticket, post_ok, wait_drained)
from sync_helpers import redis, sim  # noqa: F401 (fixtures)


CONV, TICKET = "880000000000001", "980000000000001"


def story(svc, user, contact):
    """Posts the story; returns (times, expected attributes, expected events)."""
    now = int(time.time())
    t0, t1, t2, t3, t4 = now - 3600, now - 3000, now - 2000, now - 1000, now - 500
    signup = now - 86400 * 40
    post_ok(svc, open_conversation(user, CONV, t0, contact=contact, priority=True))
    post_ok(svc, open_ticket(user, TICKET, t1, contact=contact))
    post_ok(svc, churn_tag(user, t2, contact=contact))
    post_ok(svc, close_conversation(user, CONV, t0, t3, contact=contact, rating=(2, t3)))
    doc = new_contact(user, t4, contact=contact, custom={"plan": "pro", "mrr": 99})
    doc["data"]["item"]["signed_up_at"] = signup
    post_ok(svc, doc)

    attrs = {"has_open_ticket": True, "open_ticket_count": 1, "churn_risk": True,
             "churn_risk_at": t2, "last_csat_score": 2, "last_csat_at": t3,
             "support_suppressed_commercial": True, "support_suppressed_expansion": True,
             "support_suppressed_renewal": True, "support_suppressed_feature_adoption": True,
             "_update": True}
    events = [
        ("support_ticket_opened", t0, {"ticket_id": CONV, "priority": True,
                                       "category": "conversation"}),
        ("support_ticket_opened", t1, None),
        ("support_tag_applied", t2, {"tag_name": "churn-risk"}),
        ("support_ticket_resolved", t3, {"ticket_id": CONV,
                                         "resolution_time_hrs": round(2600 / 3600, 2)}),
        ("csat_score_submitted", t3, {"score": 2, "ticket_id": CONV}),
        ("intercom_user_synced", t4, {"plan": "pro", "mrr": 99, "signup_date": signup}),
    ]
    return now, attrs, events


def lead_activity(svc, contact):
    """A contact with no external_id: its state lives under intercom:<id>."""
    now = int(time.time())
    post_ok(svc, open_conversation(None, "880000000000099", now - 600, contact=contact))
    post_ok(svc, churn_tag(None, now - 300, contact=contact))


def check_delivery(sim, redis, user, lead_contact, now, attrs, events, api):
    wait_for(lambda: len(sim.events_for(user)) >= len(events), timeout=30,
             what=f"{len(events)} events for {user}")
    wait_drained(redis)

    # The last identify carries the final state, exactly these attributes.
    idents = identifies_of(sim, user)
    assert idents, "no identify reached Customer.io"
    last = dict(idents[-1])
    ts = last.pop("_timestamp")
    assert isinstance(ts, int) and not isinstance(ts, bool) and abs(ts - now) < 120, ts
    assert last == attrs, last
    stamps = [i["_timestamp"] for i in idents]
    assert stamps == sorted(stamps), "identify _timestamps go backwards"
    for i in idents:
        assert i["_update"] is True, i
        assert isinstance(i["has_open_ticket"], bool) and isinstance(i["churn_risk"], bool)
        assert type(i["open_ticket_count"]) is int

    # Each event once, under its seed name, at Intercom's time, with a ULID id.
    got = sim.events_for(user)
    assert len(got) == len(events), [e["name"] for e in got]
    assert sim.event_duplicates == 0
    ids = [e["id"] for e in got]
    assert len(set(ids)) == len(ids)
    for e in got:
        assert re.match(ULID, e["id"]), e
        assert e["api"] == api and e["type"] == "event", e
    remaining = list(got)
    for name, ts_, data in events:
        match = [e for e in remaining if e["name"] == name and e["timestamp"] == ts_ and
                 (data is None or e["data"] == data)]
        assert match, f"missing {name} at {ts_} with {data}; got {got}"
        remaining.remove(match[0])
    ticket_opened = [e for e in got if e["name"] == "support_ticket_opened" and
                     e["data"]["ticket_id"] == TICKET]
    assert ticket_opened and ticket_opened[0]["data"]["priority"] is False

    # Every request authenticated with HTTP Basic site_id:api_key; nothing about the lead.
    reqs = api_requests(sim)
    assert reqs
    for r in reqs:
        assert r["headers"].get("authorization") == basic_auth(), r["headers"]
        assert r["headers"].get("content-type", "").startswith("application/json")
        assert "intercom:" not in urllib.parse.unquote(r["path"]), r["path"]
        assert b"intercom:" not in r["body"], r["body"][:300]
        assert lead_contact.encode() not in r["body"]
    assert not [p for p in sim.profiles if p.startswith("intercom:")]
    return reqs


def test_v2_batch_carries_attributes_and_events(sim, redis, make_service):
    svc = make_service(env=cio_env(sim))
    user, lead = "u-sync-pay-v2", "c-sync-lead-v2"
    lead_activity(svc, lead)
    now, attrs, events = story(svc, user, "c-sync-pay-v2")
    reqs = check_delivery(sim, redis, user, lead, now, attrs, events, "v2")
    assert {(r["method"], r["path"]) for r in reqs} == {("POST", "/api/v2/batch")}
    # The batch items name the person by id, the identify carries a timestamp.
    for r in reqs:
        for op in r["json"]["batch"]:
            assert op["type"] == "person" and op["identifiers"] == {"id": user}, op
            if op["action"] == "identify":
                assert type(op["timestamp"]) is int
    assert sim.profile(user)["has_open_ticket"] is True


def test_v1_calls_carry_attributes_and_events(sim, redis, make_service):
    svc = make_service(env=cio_env(sim, CIO_API="v1"))
    user, lead = "u+sync/1@example.com x", "c-sync-lead-v1"
    lead_activity(svc, lead)
    now, attrs, events = story(svc, user, "c-sync-pay-v1")
    reqs = check_delivery(sim, redis, user, lead, now, attrs, events, "v1")
    enc = "u%2Bsync%2F1%40example.com%20x"
    paths = {(r["method"], r["path"]) for r in reqs}
    assert paths == {("PUT", f"/api/v1/customers/{enc}"),
                     ("POST", f"/api/v1/customers/{enc}/events")}, paths
    for r in reqs:
        if r["method"] == "POST":
            assert set(r["json"]) == {"name", "id", "timestamp", "data"}, r["json"]


@pytest.mark.parametrize("api", ["v2", "v1"])
def test_last_ticket_closing_clears_the_attributes(sim, redis,
                                                     make_service, api):
    """The attributes follow the state down too: the last ticket closing sends
    has_open_ticket false and lifts the open-ticket suppressions."""
    svc = make_service(env=cio_env(sim, CIO_API=api))
    user = f"u-sync-pay-close-{api}"
    t0 = int(time.time()) - 600
    post_ok(svc, open_conversation(user, "880000000000010", t0))
    wait_for(lambda: (identifies_of(sim, user) or [{}])[-1].get("has_open_ticket") is True,
             timeout=30, what="has_open_ticket true")
    post_ok(svc, close_conversation(user, "880000000000010", t0, t0 + 300))
    wait_for(lambda: identifies_of(sim, user)[-1].get("has_open_ticket") is False,
             timeout=30, what="has_open_ticket false")
    wait_drained(redis)
    last = identifies_of(sim, user)[-1]
    assert last["open_ticket_count"] == 0
    assert last["support_suppressed_commercial"] is False
    assert last["support_suppressed_renewal"] is False
    assert "last_csat_score" not in last and "churn_risk_at" not in last
    assert [e["name"] for e in sim.events_for(user)] == ["support_ticket_opened",
                                                         "support_ticket_resolved"]
