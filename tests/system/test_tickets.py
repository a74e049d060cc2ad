"""Tickets and the open-ticket state: several tickets per user, unordered and repeated
deliveries, snooze/reopen/delete, both ticket_state shapes, 1.x payloads, and every real
fixture shape accepted."""
import json
import random
import time

import pytest

from harness import FIXTURES, events_key, sign
from isolation import redis, svc  # noqa: F401 (fixtures: deliveries stay queued)
from payloads import (all_fixture_names, contact_attached, conversation, conversation_deleted,
                      conversation_v1, fixture, ticket, with_notif_id)

CAMPAIGNS = ("commercial", "expansion", "renewal", "feature_adoption")

# Ticket versions: "recent" is a day ago (a normal late or reordered delivery); "old" is
# January 2026, the fixtures' world (a replay of history). The contract's ordering rule
# has no age limit, so both must hold.
ERAS = {"recent": int(time.time()) - 86400, "old": 1768000000}


def post_ok(svc, doc):
    r = svc.webhook(doc)
    assert r.status == 200, (doc.get("topic"), r)
    return r


def is_duplicate(r):
    try:
        body = r.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("status") == "duplicate"


def open_ids(svc, user):
    return sorted(t["id"] for t in svc.user(user)["open_tickets"])


def events(redis, user):
    return [json.loads(e) for e in redis.cmd("LRANGE", events_key(user), 0, -1)]


def assert_suppression(svc, user, campaign, suppressed, reasons):
    r = svc.suppression(user, campaign)
    assert r.status == 200, r
    assert r.json() == {"user_id": user, "campaign": campaign, "suppressed": suppressed,
                        "reasons": reasons}, r.json()


# --------------------------------------------------------------------------- several tickets

def test_two_concurrent_tickets_keep_user_suppressed_until_both_close(svc):
    u = "u-tix-two"
    post_ok(svc, conversation(conv_id="210000000000001", users=[("c-two", u)], state="open",
                              created_at=1768000000, updated_at=1768000100))
    post_ok(svc, ticket(topic="ticket.created", ticket_id="310000000000001",
                        users=[("c-two", u)], category="submitted",
                        created_at=1768000200, updated_at=1768000300))

    st = svc.user(u)
    assert st["user_id"] == u
    assert st["has_open_ticket"] is True
    assert st["open_ticket_count"] == 2
    by_id = {t["id"]: t for t in st["open_tickets"]}
    assert set(by_id) == {"210000000000001", "310000000000001"}
    assert by_id["210000000000001"]["kind"] == "conversation"
    assert by_id["310000000000001"]["kind"] == "ticket"
    assert by_id["210000000000001"]["state"] == "open"
    assert by_id["210000000000001"]["updated_at"] == 1768000100
    assert by_id["310000000000001"]["updated_at"] == 1768000300
    assert st["suppressed"] == {"commercial": True, "expansion": True, "renewal": True,
                                "feature_adoption": False}
    for c in ("commercial", "expansion", "renewal"):
        assert_suppression(svc, u, c, True, ["open_ticket"])
    assert_suppression(svc, u, "feature_adoption", False, [])

    # The first one resolves: the other keeps the user suppressed.
    post_ok(svc, conversation(conv_id="210000000000001", users=[("c-two", u)], state="closed",
                              created_at=1768000000, updated_at=1768000400))
    st = svc.user(u)
    assert st["has_open_ticket"] is True
    assert st["open_ticket_count"] == 1
    assert open_ids(svc, u) == ["310000000000001"]
    assert_suppression(svc, u, "renewal", True, ["open_ticket"])
    r = svc.check("commercial", [u, "u-tix-never-seen"])
    assert r.status == 200, r
    assert r.json() == {"campaign": "commercial", "results": [
        {"user_id": u, "suppressed": True, "reasons": ["open_ticket"]},
        {"user_id": "u-tix-never-seen", "suppressed": False, "reasons": []}]}

    # The last one resolves: nothing suppresses the user any more.
    post_ok(svc, ticket(topic="ticket.state.updated", ticket_id="310000000000001",
                        users=[("c-two", u)], category="resolved",
                        created_at=1768000200, updated_at=1768000500))
    st = svc.user(u)
    assert st["has_open_ticket"] is False
    assert st["open_ticket_count"] == 0
    assert st["open_tickets"] == []
    assert st["suppressed"] == {c: False for c in CAMPAIGNS}
    for c in CAMPAIGNS:
        assert_suppression(svc, u, c, False, [])
    r = svc.check("renewal", ["u-tix-never-seen", u])
    assert r.status == 200, r
    assert r.json() == {"campaign": "renewal", "results": [
        {"user_id": "u-tix-never-seen", "suppressed": False, "reasons": []},
        {"user_id": u, "suppressed": False, "reasons": []}]}


# --------------------------------------------------------------------------- ordering

@pytest.mark.parametrize("era", ["recent", "old"])
@pytest.mark.parametrize("kind", ["conversation", "ticket"])
def test_close_delivered_before_older_open_stays_closed(svc, kind, era):
    t0 = ERAS[era]
    u = f"u-ooo-{kind}"
    tid = "220000000000001" if kind == "conversation" else "320000000000001"
    if kind == "conversation":
        closed = conversation(topic="conversation.admin.closed", conv_id=tid,
                              users=[("c-ooo", u)], state="closed", created_at=t0,
                              updated_at=t0 + 500)
        opened = conversation(topic="conversation.user.created", conv_id=tid,
                              users=[("c-ooo", u)], state="open", created_at=t0,
                              updated_at=t0 + 100)
    else:
        closed = ticket(topic="ticket.state.updated", ticket_id=tid, users=[("c-ooo", u)],
                        category="resolved", created_at=t0, updated_at=t0 + 500)
        opened = ticket(topic="ticket.created", ticket_id=tid, users=[("c-ooo", u)],
                        category="submitted", created_at=t0, updated_at=t0 + 100)
    post_ok(svc, closed)
    post_ok(svc, opened)
    st = svc.user(u)
    assert st["has_open_ticket"] is False, st
    assert st["open_ticket_count"] == 0
    assert st["open_tickets"] == []
    assert_suppression(svc, u, "commercial", False, [])


@pytest.mark.parametrize("era", ["recent", "old"])
def test_open_close_then_late_older_open_stays_closed(svc, era):
    t0 = ERAS[era]
    u = "u-ooo-late"
    tid = "220000000000003"
    post_ok(svc, conversation(conv_id=tid, users=[("c-late", u)], state="open",
                              created_at=t0, updated_at=t0 + 100))
    post_ok(svc, conversation(conv_id=tid, users=[("c-late", u)], state="closed",
                              created_at=t0, updated_at=t0 + 500))
    # A retry of an update from between the two arrives last.
    post_ok(svc, conversation(topic="conversation.admin.noted", conv_id=tid,
                              users=[("c-late", u)], state="open", created_at=t0,
                              updated_at=t0 + 300))
    assert open_ids(svc, u) == []


def test_older_open_after_newer_open_keeps_newer_version(svc):
    u = "u-older-open"
    post_ok(svc, conversation(conv_id="220000000000002", users=[("c-oo", u)], state="snoozed",
                              updated_at=1768000500))
    post_ok(svc, conversation(conv_id="220000000000002", users=[("c-oo", u)], state="open",
                              updated_at=1768000100))
    (t,) = svc.user(u)["open_tickets"]
    assert t["state"] == "snoozed"
    assert t["updated_at"] == 1768000500


@pytest.mark.parametrize("era", ["recent", "old"])
def test_updated_at_tie_is_broken_by_envelope_created_at(svc, era):
    t0 = ERAS[era]
    u = "u-tie"
    # In order: open, then a close with the same updated_at but a later envelope.
    post_ok(svc, conversation(conv_id="230000000000001", users=[("c-tie", u)], state="open",
                              created_at=t0, updated_at=t0 + 100, event_at=t0 + 101))
    post_ok(svc, conversation(conv_id="230000000000001", users=[("c-tie", u)], state="closed",
                              created_at=t0, updated_at=t0 + 100, event_at=t0 + 110))
    assert open_ids(svc, u) == []
    # Reversed: the later envelope (closed) arrives first; the earlier one changes nothing.
    post_ok(svc, conversation(conv_id="230000000000002", users=[("c-tie", u)], state="closed",
                              created_at=t0, updated_at=t0 + 100, event_at=t0 + 110))
    post_ok(svc, conversation(conv_id="230000000000002", users=[("c-tie", u)], state="open",
                              created_at=t0, updated_at=t0 + 100, event_at=t0 + 101))
    assert open_ids(svc, u) == []
    # And the same for a close-then-reopen at the same updated_at.
    post_ok(svc, conversation(conv_id="230000000000003", users=[("c-tie", u)], state="open",
                              created_at=t0, updated_at=t0 + 100, event_at=t0 + 120))
    post_ok(svc, conversation(conv_id="230000000000003", users=[("c-tie", u)], state="closed",
                              created_at=t0, updated_at=t0 + 100, event_at=t0 + 105))
    assert open_ids(svc, u) == ["230000000000003"]


# --------------------------------------------------------------------------- repeats

def _open_doc(shape, u, cid, conv_id):
    if shape == "2.x":
        return conversation(conv_id=conv_id, users=[(cid, u)], state="open",
                            updated_at=1768000100)
    return conversation_v1(conv_id=conv_id, user_id=u, contact_id=cid, state="open",
                           updated_at=1768000100)


@pytest.mark.parametrize("shape", ["2.x", "1.x"])
def test_same_notification_twice_is_duplicate_and_changes_nothing(svc, redis, shape):
    u = f"u-dup-{shape}"
    doc = _open_doc(shape, u, f"c-dup-{shape}", "240000000000001")
    body = json.dumps(doc).encode()
    r = post_ok(svc, body)
    assert not is_duplicate(r), r
    before = svc.user(u)
    ev_before = events(redis, u)
    assert before["open_ticket_count"] == 1

    r = post_ok(svc, body)
    assert r.json() == {"status": "duplicate"}, r
    assert svc.user(u) == before
    assert events(redis, u) == ev_before

    # A real redelivery carries the same id but bumped delivery bookkeeping.
    again = dict(doc, delivery_attempts=2, first_sent_at=doc["first_sent_at"] + 60,
                 delivered_at=doc["first_sent_at"] + 61)
    r = post_ok(svc, again)
    assert r.json() == {"status": "duplicate"}, r
    assert svc.user(u) == before
    assert events(redis, u) == ev_before


def test_reused_notification_id_changes_nothing(svc, redis):
    u = "u-dup-reuse"
    opened = conversation(conv_id="240000000000002", users=[("c-reuse", u)], state="open",
                          updated_at=1768000100, notif_id="notif_reuse-0001")
    post_ok(svc, opened)
    before = svc.user(u)
    ev_before = events(redis, u)
    closed = conversation(conv_id="240000000000002", users=[("c-reuse", u)], state="closed",
                          updated_at=1768000900, notif_id="notif_reuse-0001")
    r = post_ok(svc, closed)
    assert r.json() == {"status": "duplicate"}, r
    assert svc.user(u) == before
    assert events(redis, u) == ev_before


def test_null_notification_id_dedupes_on_body(svc, redis):
    u = "u-dup-null"
    opened = with_notif_id(conversation(conv_id="240000000000003", users=[("c-null", u)],
                                        state="open", updated_at=1768000100), None)
    body = json.dumps(opened).encode()
    r = post_ok(svc, body)
    assert not is_duplicate(r), r
    before = svc.user(u)
    assert before["open_ticket_count"] == 1
    ev_before = events(redis, u)
    r = post_ok(svc, body)
    assert r.json() == {"status": "duplicate"}, r
    assert svc.user(u) == before
    assert events(redis, u) == ev_before
    # A different body with a null id is a different notification.
    closed = with_notif_id(conversation(conv_id="240000000000003", users=[("c-null", u)],
                                        state="closed", updated_at=1768000200), None)
    r = post_ok(svc, closed)
    assert not is_duplicate(r), r
    assert svc.user(u)["open_ticket_count"] == 0


def test_two_serializations_of_one_ticket_transition_change_nothing(svc, redis):
    """ticket_state as an object, then the same transition as a string (another envelope id)."""
    u = "u-dup-serial"
    post_ok(svc, ticket(topic="ticket.created", ticket_id="340000000000001",
                        users=[("c-serial", u)], category="submitted", updated_at=1768000100))
    as_object = ticket(ticket_id="340000000000001", users=[("c-serial", u)],
                       category="in_progress", state_shape="object", updated_at=1768000300)
    as_string = ticket(ticket_id="340000000000001", users=[("c-serial", u)],
                       category="in_progress", state_shape="string", updated_at=1768000300)
    post_ok(svc, as_object)
    before = svc.user(u)
    ev_before = events(redis, u)
    assert before["open_ticket_count"] == 1
    post_ok(svc, as_string)
    assert svc.user(u) == before
    assert events(redis, u) == ev_before


def test_v1_and_v2_serializations_of_one_conversation_update_change_nothing(svc, redis):
    u = "u-dup-shapes"
    post_ok(svc, conversation(conv_id="240000000000004", users=[("c-shapes", u)], state="open",
                              updated_at=1768000100))
    before = svc.user(u)
    ev_before = events(redis, u)
    post_ok(svc, conversation_v1(conv_id="240000000000004", user_id=u, contact_id="c-shapes",
                                 state="open", created_at=1768000000, updated_at=1768000100))
    assert svc.user(u) == before
    assert events(redis, u) == ev_before


# --------------------------------------------------------------------------- lifecycle

@pytest.mark.parametrize("shape", ["2.x", "1.x"])
def test_snoozed_counts_as_open(svc, shape):
    u = f"u-snooze-{shape}"
    if shape == "2.x":
        doc = conversation(topic="conversation.admin.snoozed", conv_id="250000000000001",
                           users=[("c-snz", u)], state="snoozed", updated_at=1768000100)
    else:
        doc = conversation_v1(topic="conversation.admin.snoozed", conv_id="250000000000001",
                              user_id=u, contact_id="c-snz", state="snoozed",
                              updated_at=1768000100)
    post_ok(svc, doc)
    st = svc.user(u)
    assert st["has_open_ticket"] is True
    assert st["open_ticket_count"] == 1
    assert st["open_tickets"][0]["state"] == "snoozed"
    assert_suppression(svc, u, "commercial", True, ["open_ticket"])
    # Unsnoozed: still open, now "open".
    post_ok(svc, conversation(topic="conversation.admin.unsnoozed", conv_id="250000000000001",
                              users=[("c-snz", u)], state="open", updated_at=1768000200))
    st = svc.user(u)
    assert st["open_ticket_count"] == 1
    assert st["open_tickets"][0]["state"] == "open"


def test_closed_then_newer_open_reopens(svc):
    u = "u-reopen"
    cid = "260000000000001"
    post_ok(svc, conversation(topic="conversation.user.created", conv_id=cid,
                              users=[("c-reo", u)], state="open", updated_at=1768000100))
    post_ok(svc, conversation(topic="conversation.admin.closed", conv_id=cid,
                              users=[("c-reo", u)], state="closed", updated_at=1768000200))
    assert svc.user(u)["has_open_ticket"] is False
    post_ok(svc, conversation(topic="conversation.admin.opened", conv_id=cid,
                              users=[("c-reo", u)], state="open", updated_at=1768000300))
    st = svc.user(u)
    assert st["has_open_ticket"] is True
    (t,) = st["open_tickets"]
    assert t["id"] == cid and t["state"] == "open" and t["updated_at"] == 1768000300
    assert_suppression(svc, u, "renewal", True, ["open_ticket"])


def test_delete_removes_ticket_for_every_owner_and_late_delivery_does_not_resurrect(svc):
    ua, ub, uc = "u-del-a", "u-del-b", "u-del-c"
    conv = "270000000000001"
    post_ok(svc, conversation(conv_id=conv, users=[("c-del-a", ua), ("c-del-b", ub)],
                              state="open", updated_at=1768000100))
    post_ok(svc, contact_attached(conv_id=conv, contact_id="c-del-c", external_id=uc,
                                  event_at=1768000200))
    # ua also has another, unrelated ticket.
    post_ok(svc, conversation(conv_id="270000000000002", users=[("c-del-a", ua)],
                              state="open", updated_at=1768000100))
    assert open_ids(svc, ua) == [conv, "270000000000002"]
    assert open_ids(svc, ub) == [conv]
    assert open_ids(svc, uc) == [conv]

    post_ok(svc, conversation_deleted(conv_id=conv, event_at=1768000900))
    assert open_ids(svc, ua) == ["270000000000002"]
    for u in (ub, uc):
        st = svc.user(u)
        assert st["has_open_ticket"] is False, st
        assert st["open_ticket_count"] == 0
        assert_suppression(svc, u, "commercial", False, [])

    # A delivery from before the delete arrives late (retry): nothing comes back.
    post_ok(svc, conversation(topic="conversation.admin.replied", conv_id=conv,
                              users=[("c-del-a", ua), ("c-del-b", ub)], state="open",
                              updated_at=1768000150, event_at=1768000151))
    post_ok(svc, conversation(topic="conversation.user.created", conv_id=conv,
                              users=[("c-del-a", ua), ("c-del-b", ub)], state="open",
                              updated_at=1768000050))
    assert open_ids(svc, ua) == ["270000000000002"]
    assert open_ids(svc, ub) == []
    assert open_ids(svc, uc) == []


def test_delete_delivered_before_the_ticket_is_seen_keeps_it_gone(svc):
    u = "u-del-first"
    conv = "270000000000003"
    t0 = ERAS["recent"]
    post_ok(svc, conversation_deleted(conv_id=conv, event_at=t0 + 900))
    post_ok(svc, conversation(topic="conversation.user.created", conv_id=conv,
                              users=[("c-del-first", u)], state="open", created_at=t0,
                              updated_at=t0 + 100))
    assert open_ids(svc, u) == []
    assert_suppression(svc, u, "commercial", False, [])


@pytest.mark.parametrize("seen", ["known ticket", "unknown ticket"])
def test_redelivered_delete_is_duplicate(svc, seen):
    conv = "270000000000004"
    t0 = ERAS["recent"]
    if seen == "known ticket":
        post_ok(svc, conversation(conv_id=conv, users=[("c-del-dup", "u-del-dup")],
                                  state="open", created_at=t0, updated_at=t0 + 100))
    body = json.dumps(conversation_deleted(conv_id=conv, event_at=t0 + 900)).encode()
    r = post_ok(svc, body)
    assert not is_duplicate(r), r
    r = post_ok(svc, body)
    assert r.json() == {"status": "duplicate"}, r
    assert open_ids(svc, "u-del-dup") == []


# --------------------------------------------------------------------------- ticket states

@pytest.mark.parametrize("shape", ["object", "string"])
@pytest.mark.parametrize("category", ["submitted", "in_progress", "waiting_on_customer"])
def test_ticket_state_categories_that_are_open(svc, shape, category):
    u = f"u-ts-{shape}-{category}"
    post_ok(svc, ticket(ticket_id="280000000000001", users=[("c-ts", u)], category=category,
                        state_shape=shape, updated_at=1768000100))
    st = svc.user(u)
    assert st["has_open_ticket"] is True, st
    (t,) = st["open_tickets"]
    assert t["id"] == "280000000000001"
    assert t["kind"] == "ticket"
    assert_suppression(svc, u, "commercial", True, ["open_ticket"])


@pytest.mark.parametrize("shape", ["object", "string"])
def test_ticket_state_resolved_is_closed(svc, shape):
    u = f"u-ts-res-{shape}"
    # Resolved from the start: no open ticket.
    post_ok(svc, ticket(ticket_id="280000000000002", users=[("c-tsr", u)], category="resolved",
                        state_shape=shape, updated_at=1768000100))
    assert svc.user(u)["has_open_ticket"] is False
    # Open, then resolved in this shape.
    post_ok(svc, ticket(ticket_id="280000000000003", users=[("c-tsr", u)],
                        category="in_progress", state_shape=shape, updated_at=1768000100))
    assert open_ids(svc, u) == ["280000000000003"]
    post_ok(svc, ticket(topic="ticket.resolved", ticket_id="280000000000003",
                        users=[("c-tsr", u)], category="resolved", state_shape=shape,
                        updated_at=1768000200))
    st = svc.user(u)
    assert st["has_open_ticket"] is False, st
    assert st["open_tickets"] == []


def test_ticket_state_comes_from_payload_not_topic(svc):
    """A ticket.state.updated to waiting_on_customer after a resolved state reopens it;
    a ticket.closed topic with an open state is open."""
    u = "u-ts-topic"
    post_ok(svc, ticket(ticket_id="280000000000004", users=[("c-tst", u)], category="resolved",
                        updated_at=1768000100))
    post_ok(svc, ticket(topic="ticket.state.updated", ticket_id="280000000000004",
                        users=[("c-tst", u)], category="waiting_on_customer",
                        updated_at=1768000200))
    assert open_ids(svc, u) == ["280000000000004"]
    post_ok(svc, conversation(topic="conversation.admin.closed", conv_id="280000000000005",
                              users=[("c-tst", u)], state="open", updated_at=1768000100))
    assert open_ids(svc, u) == ["280000000000004", "280000000000005"]


# --------------------------------------------------------------------------- 1.x, single.created

def test_v1_payloads_use_user_user_id(svc):
    u = "u-v1-only"
    post_ok(svc, conversation_v1(topic="conversation.user.created", conv_id="290000000000001",
                                 user_id=u, contact_id="5c9553cb27e377f24eed9001",
                                 state="open", updated_at=1768000100))
    st = svc.user(u)
    assert st["has_open_ticket"] is True
    (t,) = st["open_tickets"]
    assert t["id"] == "290000000000001" and t["kind"] == "conversation"
    # Nothing was kept under the contact id.
    assert svc.user("intercom:5c9553cb27e377f24eed9001")["open_ticket_count"] == 0
    post_ok(svc, conversation_v1(topic="conversation.admin.closed", conv_id="290000000000001",
                                 user_id=u, contact_id="5c9553cb27e377f24eed9001",
                                 state="closed", updated_at=1768000200))
    assert svc.user(u)["has_open_ticket"] is False


def test_admin_single_created_arriving_closed_gives_no_open_ticket(svc):
    doc = fixture("conversation_admin_single_created")
    item = doc["data"]["item"]
    assert item["state"] == "closed"
    (contact,) = item["contacts"]["contacts"]
    u = contact["external_id"]
    post_ok(svc, doc)
    st = svc.user(u)
    assert st["has_open_ticket"] is False, st
    assert st["open_tickets"] == []
    assert_suppression(svc, u, "commercial", False, [])
    # The user replies: now it is open.
    post_ok(svc, conversation(topic="conversation.user.replied", conv_id=item["id"],
                              users=[(contact["id"], u)], state="open",
                              created_at=item["created_at"],
                              updated_at=item["updated_at"] + 600))
    assert open_ids(svc, u) == [item["id"]]


# --------------------------------------------------------------------------- every real shape

@pytest.mark.parametrize("name", all_fixture_names())
def test_every_fixture_answers_200_with_valid_signature(svc, name):
    body = (FIXTURES / f"{name}.json").read_bytes()
    r = svc.webhook(body)
    assert r.status == 200, (name, r)


def test_fixture_with_bad_signature_answers_401(svc):
    body = json.dumps(fixture("conversation_user_created")).encode()
    r = svc.post("/webhooks/intercom", body=body, headers={
        "Content-Type": "application/json", "X-Hub-Signature": sign(body, "not-the-secret")})
    assert r.status == 401, r
    assert svc.user("u-1001")["open_ticket_count"] == 0


def _world():
    docs = [fixture(n) for n in all_fixture_names()]
    return sorted(docs, key=lambda d: (d["created_at"], d["topic"]))


C1, C2, C4, T1 = "200000000000001", "200000000000002", "200000000000004", "300000000000001"


def test_fixture_world_replayed_in_order(svc):
    for doc in _world():
        post_ok(svc, doc)
    a = svc.user("u-1001")
    # C1 reopened last; T1 resolved and closed.
    assert [t["id"] for t in a["open_tickets"]] == [C1], a
    (c1,) = a["open_tickets"]
    assert c1["kind"] == "conversation"
    assert c1["state"] == "open"
    assert c1["priority"] is True
    assert c1["updated_at"] == 1768120000
    assert c1["opened_at"] == 1768003600
    assert a["last_csat"]["score"] == 2
    assert a["last_csat"]["ticket_id"] == C1
    # Tagged at 1768054000, untagged later, and long ago anyway.
    assert a["churn_risk"] is False
    assert a["churn_risk_at"] == 1768054000
    b = svc.user("u-1002")
    # C2 reopened at 1768100000; C4 arrived closed; C3 and T1 were attached then detached.
    assert [t["id"] for t in b["open_tickets"]] == [C2], b
    assert b["churn_risk"] is False
    assert b["churn_risk_at"] == 1768072000


@pytest.mark.parametrize("seed", ["reversed", 7, 1234])
def test_fixture_world_replayed_out_of_order(svc, seed):
    docs = _world()
    if seed == "reversed":
        docs.reverse()
    else:
        random.Random(seed).shuffle(docs)
    for doc in docs:
        post_ok(svc, doc)
    a = svc.user("u-1001")
    assert [t["id"] for t in a["open_tickets"]] == [C1], (seed, a)
    assert a["open_tickets"][0]["updated_at"] == 1768120000
    assert a["churn_risk"] is False
    assert a["churn_risk_at"] == 1768054000
    b = svc.user("u-1002")
    # C3 and T1 were attached to B and later detached, whatever order that arrives in.
    assert [t["id"] for t in b["open_tickets"]] == [C2], (seed, b)
    assert b["open_tickets"][0]["updated_at"] == 1768100000
    # T1 is closed for its owner whatever the order, and nothing stayed under the contact id.
    assert svc.user("intercom:65a1f0c2e4b0a1b2c3d40001")["open_ticket_count"] == 0
