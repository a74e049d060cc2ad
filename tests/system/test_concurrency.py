"""Concurrent deliveries for one user lose nothing and repeat nothing."""
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor

from harness import events_key, queue_key
from isolation import redis, svc  # noqa: F401 (fixtures: deliveries stay queued)
from payloads import contact_tag, conversation, ticket

WORKERS = 32


def post_all(svc, docs):
    bodies = [d if isinstance(d, bytes) else json.dumps(d).encode() for d in docs]
    with ThreadPoolExecutor(WORKERS) as pool:
        responses = list(pool.map(svc.webhook, bodies))
    bad = [r for r in responses if r.status != 200]
    assert not bad, bad[:5]
    return responses


def events(redis, user):
    return [json.loads(e) for e in redis.cmd("LRANGE", events_key(user), 0, -1)]


def names(evs):
    out = {}
    for e in evs:
        out[e["name"]] = out.get(e["name"], 0) + 1
    return out


def test_200_concurrent_webhooks_for_one_user_lose_nothing(svc, redis):
    u = "u-conc-many"
    t0 = int(time.time()) - 7200
    ids = [f"6100000000{i:05d}" for i in range(100)]

    def opened(i, tid):
        if i % 2:
            return ticket(topic="ticket.created", ticket_id=tid, users=[("c-conc", u)],
                          category="submitted", created_at=t0, updated_at=t0 + 10)
        return conversation(topic="conversation.user.created", conv_id=tid,
                            users=[("c-conc", u)], state="open", created_at=t0,
                            updated_at=t0 + 10)

    def closed(i, tid):
        if i % 2:
            return ticket(topic="ticket.state.updated", ticket_id=tid, users=[("c-conc", u)],
                          category="resolved", created_at=t0, updated_at=t0 + 20)
        return conversation(topic="conversation.admin.closed", conv_id=tid,
                            users=[("c-conc", u)], state="closed", created_at=t0,
                            updated_at=t0 + 20)

    post_all(svc, [opened(i, tid) for i, tid in enumerate(ids)])
    st = svc.user(u)
    assert st["open_ticket_count"] == 100, st["open_ticket_count"]
    assert sorted(t["id"] for t in st["open_tickets"]) == ids

    keep = ids[37]
    post_all(svc, [closed(i, tid) for i, tid in enumerate(ids) if tid != keep])
    st = svc.user(u)
    assert st["open_ticket_count"] == 1, st["open_ticket_count"]
    assert st["has_open_ticket"] is True
    assert [t["id"] for t in st["open_tickets"]] == [keep]
    assert svc.suppression(u, "commercial").json()["reasons"] == ["open_ticket"]

    evs = events(redis, u)
    assert names(evs) == {"support_ticket_opened": 100, "support_ticket_resolved": 99}
    assert len({e["id"] for e in evs}) == len(evs)
    assert sorted(e["data"]["ticket_id"] for e in evs
                  if e["name"] == "support_ticket_opened") == ids
    assert sorted(e["data"]["ticket_id"] for e in evs
                  if e["name"] == "support_ticket_resolved") == sorted(set(ids) - {keep})
    assert redis.cmd("ZSCORE", queue_key(u), u) is not None


def test_concurrent_open_and_close_in_any_order_end_closed(svc, redis):
    u = "u-conc-pairs"
    t0 = int(time.time()) - 7200
    docs = []
    for i in range(50):
        tid = f"6200000000{i:05d}"
        docs.append(conversation(conv_id=tid, users=[("c-pairs", u)], state="open",
                                 created_at=t0, updated_at=t0 + 10))
        docs.append(conversation(conv_id=tid, users=[("c-pairs", u)], state="closed",
                                 created_at=t0, updated_at=t0 + 20))
    random.Random(5).shuffle(docs)
    post_all(svc, docs)
    st = svc.user(u)
    assert st["open_ticket_count"] == 0, st
    assert st["open_tickets"] == []
    # Every resolution event matches an opening one, and no ticket has two of either.
    evs = events(redis, u)
    opened = [e["data"]["ticket_id"] for e in evs if e["name"] == "support_ticket_opened"]
    resolved = [e["data"]["ticket_id"] for e in evs if e["name"] == "support_ticket_resolved"]
    assert len(opened) == len(set(opened))
    assert sorted(opened) == sorted(resolved)


def test_concurrent_duplicates_produce_one_set_of_events(svc, redis):
    u = "u-conc-dup"
    t0 = int(time.time()) - 7200
    tid = "630000000000001"
    body = json.dumps(conversation(topic="conversation.user.created", conv_id=tid,
                                   users=[("c-cdup", u)], state="open", created_at=t0,
                                   updated_at=t0 + 10)).encode()
    responses = post_all(svc, [body] * 40)
    fresh = [r for r in responses if r.json().get("status") != "duplicate"]
    assert len(fresh) == 1, [r.body for r in responses]
    assert svc.user(u)["open_ticket_count"] == 1
    evs = events(redis, u)
    assert [e["name"] for e in evs] == ["support_ticket_opened"], evs

    close = json.dumps(conversation(topic="conversation.admin.closed", conv_id=tid,
                                    users=[("c-cdup", u)], state="closed", created_at=t0,
                                    updated_at=t0 + 20)).encode()
    responses = post_all(svc, [close] * 40)
    fresh = [r for r in responses if r.json().get("status") != "duplicate"]
    assert len(fresh) == 1, [r.body for r in responses]
    assert svc.user(u)["open_ticket_count"] == 0
    evs = events(redis, u)
    assert [e["name"] for e in evs] == ["support_ticket_opened", "support_ticket_resolved"], evs


def test_concurrent_mixed_events_for_one_user_all_land(svc, redis):
    u = "u-conc-mixed"
    now = int(time.time())
    docs = [conversation(conv_id=f"6400000000{i:05d}", users=[("c-mixed", u)], state="open",
                         created_at=now - 600, updated_at=now - 300) for i in range(60)]
    docs.append(contact_tag(contact_id="c-mixed", external_id=u, event_at=now - 10))
    docs.append(conversation(topic="conversation.rating.added", conv_id="640000000099999",
                             users=[("c-mixed", u)], state="closed", created_at=now - 900,
                             updated_at=now - 5, rating=(1, now - 5), event_at=now - 5))
    docs.append(conversation(conv_id="640000000088888", users=[("c-mixed", u)], state="closed",
                             created_at=now - 100, updated_at=now - 50, priority=True))
    random.Random(11).shuffle(docs)
    post_all(svc, docs)
    st = svc.user(u)
    assert st["open_ticket_count"] == 60, st["open_ticket_count"]
    assert st["churn_risk"] is True and st["churn_risk_at"] == now - 10
    assert st["last_csat"] == {"score": 1, "at": now - 5, "ticket_id": "640000000099999"}
    assert st["suppressed"] == {"commercial": True, "expansion": True, "renewal": True,
                                "feature_adoption": True}
    assert svc.suppression(u, "expansion").json()["reasons"] == [
        "open_ticket", "recent_priority_ticket"]
    assert svc.suppression(u, "renewal").json()["reasons"] == ["open_ticket", "low_csat"]
    assert names(events(redis, u))["support_ticket_opened"] == 60
