"""The work recorded for the Customer.io sync, in the same step as the state change: the
user in its partition's queue, and the seed-taxonomy events with stable ULID ids."""
import json
import re
import time

from harness import events_key, queue_key
from isolation import redis, svc  # noqa: F401 (fixtures: deliveries stay queued)
from payloads import (contact_created, contact_tag, conversation, conversation_v1, ticket,
                      ticket_closed_contact_only)

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def post_ok(svc, doc):
    r = svc.webhook(doc)
    assert r.status == 200, (doc.get("topic"), r)
    return r


def events(redis, user):
    return [json.loads(e) for e in redis.cmd("LRANGE", events_key(user), 0, -1)]


def queued(redis, user):
    return redis.cmd("ZSCORE", queue_key(user), user) is not None


def check_event_shape(e):
    assert set(e) == {"id", "name", "ts", "data"}, e
    assert isinstance(e["id"], str) and ULID.match(e["id"]), e
    assert isinstance(e["ts"], int), e
    assert isinstance(e["data"], dict), e


def all_queued_members(redis):
    out = []
    for key in redis.cmd("KEYS", "sd:*:q"):
        out += redis.cmd("ZRANGE", key, 0, -1)
    return out


def test_open_queues_user_and_records_ticket_opened(svc, redis):
    u = "u-sync-open"
    t0 = int(time.time()) - 3600
    assert not queued(redis, u)
    post_ok(svc, conversation(topic="conversation.user.created", conv_id="710000000000001",
                              users=[("c-sync", u)], state="open", created_at=t0,
                              updated_at=t0 + 10))
    assert queued(redis, u)
    (e,) = events(redis, u)
    check_event_shape(e)
    assert e["name"] == "support_ticket_opened"
    assert e["data"]["ticket_id"] == "710000000000001"
    assert "priority" in e["data"] and "category" in e["data"], e

    # The same notification again, and a newer update that leaves it open: no new event.
    post_ok(svc, conversation(topic="conversation.admin.replied", conv_id="710000000000001",
                              users=[("c-sync", u)], state="open", created_at=t0,
                              updated_at=t0 + 20))
    assert events(redis, u) == [e]


def test_duplicate_and_stale_deliveries_add_nothing(svc, redis):
    u = "u-sync-dup"
    t0 = int(time.time()) - 3600
    doc = ticket(topic="ticket.created", ticket_id="720000000000001", users=[("c-sdup", u)],
                 category="submitted", created_at=t0, updated_at=t0 + 10)
    post_ok(svc, doc)
    first = events(redis, u)
    assert [e["name"] for e in first] == ["support_ticket_opened"]
    assert first[0]["data"]["ticket_id"] == "720000000000001"
    score = redis.cmd("ZSCORE", queue_key(u), u)
    assert score is not None

    r = post_ok(svc, doc)
    assert r.json() == {"status": "duplicate"}
    assert events(redis, u) == first
    # Newer state, then an older one arriving late: only the newer one counts.
    post_ok(svc, ticket(ticket_id="720000000000001", users=[("c-sdup", u)],
                        category="resolved", created_at=t0, updated_at=t0 + 30))
    after_close = events(redis, u)
    assert [e["name"] for e in after_close] == ["support_ticket_opened",
                                                "support_ticket_resolved"]
    post_ok(svc, ticket(ticket_id="720000000000001", users=[("c-sdup", u)],
                        category="in_progress", created_at=t0, updated_at=t0 + 20))
    assert events(redis, u) == after_close


def test_close_records_ticket_resolved(svc, redis):
    u = "u-sync-close"
    t0 = int(time.time()) - 3 * 3600
    post_ok(svc, conversation(topic="conversation.user.created", conv_id="730000000000001",
                              users=[("c-sclose", u)], state="open", created_at=t0,
                              updated_at=t0))
    post_ok(svc, conversation(topic="conversation.admin.closed", conv_id="730000000000001",
                              users=[("c-sclose", u)], state="closed", created_at=t0,
                              updated_at=t0 + 2 * 3600))
    evs = events(redis, u)
    assert [e["name"] for e in evs] == ["support_ticket_opened", "support_ticket_resolved"]
    for e in evs:
        check_event_shape(e)
    assert len({e["id"] for e in evs}) == 2
    res = evs[1]["data"]
    assert res["ticket_id"] == "730000000000001"
    assert isinstance(res["resolution_time_hrs"], (int, float)), res
    assert res["resolution_time_hrs"] >= 0
    assert queued(redis, u)


def test_ticket_closed_with_contact_only_records_resolution_for_learned_user(svc, redis):
    u = "u-sync-tclosed"
    t0 = int(time.time()) - 3600
    post_ok(svc, ticket(topic="ticket.created", ticket_id="730000000000002",
                        users=[("c-stc", u)], category="submitted", created_at=t0,
                        updated_at=t0 + 10))
    post_ok(svc, ticket_closed_contact_only(ticket_id="730000000000002", contact_ids=("c-stc",),
                                            created_at=t0, updated_at=t0 + 100))
    evs = events(redis, u)
    assert [e["name"] for e in evs] == ["support_ticket_opened", "support_ticket_resolved"]
    assert evs[1]["data"]["ticket_id"] == "730000000000002"


def test_intercom_only_contact_is_never_queued(svc, redis):
    cid = "c-sync-lead"
    lead = "intercom:" + cid
    now = int(time.time())
    post_ok(svc, conversation(topic="conversation.admin.open.assigned", conv_id="740000000000001",
                              users=[(cid, None)], state="open", created_at=now - 600,
                              updated_at=now - 300))
    post_ok(svc, contact_tag(topic="contact.lead.tag.created", contact_id=cid, external_id=None,
                             event_at=now - 100))
    post_ok(svc, conversation(topic="conversation.rating.added", conv_id="740000000000001",
                              users=[(cid, None)], state="closed", created_at=now - 600,
                              updated_at=now - 50, rating=(1, now - 50), event_at=now - 50))
    st = svc.user(lead)
    assert st["churn_risk"] is True and st["last_csat"]["score"] == 1, st
    assert not queued(redis, lead)
    assert redis.cmd("LLEN", events_key(lead)) == 0
    assert [m for m in all_queued_members(redis) if m.startswith("intercom:")] == []
    assert all_queued_members(redis) == []

    # Once linked, the real user has the state and is queued; intercom: still never.
    u = "u-sync-linked"
    post_ok(svc, contact_created(contact_id=cid, external_id=u, event_at=now - 10))
    st = svc.user(u)
    assert st["churn_risk"] is True and st["last_csat"]["score"] == 1, st
    assert queued(redis, u)
    assert all_queued_members(redis) == [u]
    assert redis.cmd("LLEN", events_key(lead)) == 0


def test_rating_records_csat_score_submitted(svc, redis):
    u = "u-sync-csat"
    now = int(time.time())
    doc = conversation(topic="conversation.rating.added", conv_id="750000000000001",
                       users=[("c-scsat", u)], state="closed", created_at=now - 7200,
                       updated_at=now - 60, rating=(2, now - 60), event_at=now - 60)
    post_ok(svc, doc)
    evs = [e for e in events(redis, u) if e["name"] == "csat_score_submitted"]
    assert len(evs) == 1, events(redis, u)
    check_event_shape(evs[0])
    assert evs[0]["data"] == {"score": 2, "ticket_id": "750000000000001"}
    assert queued(redis, u)
    # Redelivery: still one.
    post_ok(svc, doc)
    assert len([e for e in events(redis, u) if e["name"] == "csat_score_submitted"]) == 1


def test_tags_record_support_tag_applied(svc, redis):
    u = "u-sync-tag"
    now = int(time.time())
    post_ok(svc, conversation(topic="conversation_part.tag.created", conv_id="760000000000001",
                              users=[("c-stag", u)], state="open", created_at=now - 600,
                              updated_at=now - 300, tags=[("billing", now - 200)],
                              event_at=now - 200))
    post_ok(svc, contact_tag(contact_id="c-stag", external_id=u, tag="churn-risk",
                             event_at=now - 100))
    tags = [e for e in events(redis, u) if e["name"] == "support_tag_applied"]
    for e in tags:
        check_event_shape(e)
    by_name = {e["data"]["tag_name"].lower(): e["data"] for e in tags}
    assert set(by_name) == {"billing", "churn-risk"}, tags
    assert by_name["billing"].get("ticket_id") == "760000000000001"
    assert by_name["churn-risk"].get("ticket_id") is None


def test_v1_open_is_recorded_for_user_id(svc, redis):
    u = "u-sync-v1"
    t0 = int(time.time()) - 3600
    post_ok(svc, conversation_v1(topic="conversation.user.created", conv_id="770000000000001",
                                 user_id=u, contact_id="5c9553cb27e377f24eed7701",
                                 state="open", created_at=t0, updated_at=t0 + 10))
    assert queued(redis, u)
    assert [e["name"] for e in events(redis, u)] == ["support_ticket_opened"]
    assert not queued(redis, "intercom:5c9553cb27e377f24eed7701")


def test_rating_carried_on_later_updates_is_recorded_once(svc, redis):
    """Intercom keeps conversation_rating on every later delivery of the conversation."""
    u = "u-sync-csat-carry"
    now = int(time.time())
    rating = (2, now - 600)
    post_ok(svc, conversation(topic="conversation.rating.added", conv_id="750000000000002",
                              users=[("c-carry", u)], state="closed", created_at=now - 7200,
                              updated_at=now - 600, rating=rating, event_at=now - 600))
    post_ok(svc, conversation(topic="conversation.admin.opened", conv_id="750000000000002",
                              users=[("c-carry", u)], state="open", created_at=now - 7200,
                              updated_at=now - 300, rating=rating))
    post_ok(svc, conversation(topic="conversation.admin.closed", conv_id="750000000000002",
                              users=[("c-carry", u)], state="closed", created_at=now - 7200,
                              updated_at=now - 100, rating=rating))
    evs = [e for e in events(redis, u) if e["name"] == "csat_score_submitted"]
    assert len(evs) == 1, events(redis, u)
    assert svc.user(u)["last_csat"] == {"score": 2, "at": now - 600,
                                        "ticket_id": "750000000000002"}
