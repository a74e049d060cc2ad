"""A 400-style refusal is not retried: the refused items become dead letters (reason and
Customer.io's answer kept, visible in GET /v1/admin/dead-letters), the rest of the same
batch is delivered, and an operator replays them once the cause is fixed."""
import json
import time

from harness import wait_for
from sync_helpers import (admin, api_requests, cio_env, dead_letters, identifies_of,
                          open_conversation, pause_delivery, post_ok, resume_delivery,
                          same_partition_ids, wait_drained)
from sync_helpers import redis, sim  # noqa: F401 (fixtures)


def requests_about(sim, user):
    quoted = json.dumps(user).encode()
    return [r for r in api_requests(sim)
            if quoted in r["body"] or r["path"].split("/")[4:5] == [user]]


def test_v2_refused_item_is_dead_lettered_and_the_rest_of_the_batch_delivered(
        sim, redis, make_service):
    svc = make_service(env=cio_env(sim))
    bad, good1, good2 = same_partition_ids("u-sync-dl-", 3)
    sim.reject_identifier(bad)
    # Paused, nothing is leased: the three users (one partition) go out in one batch.
    pause_delivery(sim, svc)
    t = int(time.time()) - 600
    for i, u in enumerate((bad, good1, good2)):
        post_ok(svc, open_conversation(u, f"88600000000000{i}", t + i))
    resume_delivery(sim)

    wait_for(lambda: all(len(sim.events_for(u)) == 1 for u in (good1, good2)), timeout=30,
             what="the good users delivered")
    wait_drained(redis)
    assert identifies_of(sim, good1)[-1]["has_open_ticket"] is True
    assert identifies_of(sim, good2)[-1]["has_open_ticket"] is True
    assert sim.events_for(bad) == [] and identifies_of(sim, bad) == []

    # They shared one batch; Customer.io answered 207 with the bad user's items.
    (req,) = requests_about(sim, bad)
    assert req in requests_about(sim, good1) and req in requests_about(sim, good2)
    assert req["status"] == 207
    body = req["json"]["batch"]
    assert {op["identifiers"]["id"] for op in body} >= {bad, good1, good2}

    dls = dead_letters(svc)
    assert sorted(d["kind"] for d in dls) == ["event", "identify"], dls
    for d in dls:
        assert d["user_id"] == bad and d["destination"] == "customerio"
        assert d["reason"].startswith("rejected"), d
        assert f"identifier '{bad}' rejected by cio_sim" in d["reason"], d
        assert d["status"] == 207
        errors = json.loads(d["response"])["errors"]          # the simulator's own body
        assert {e["batch_index"] for e in errors} == \
            {i for i, op in enumerate(body) if op["identifiers"]["id"] == bad}
        assert isinstance(d["at"], int) and d["at"] > 0
    event_dl = next(d for d in dls if d["kind"] == "event")
    recorded = json.loads(event_dl["payload"])
    assert recorded["name"] == "support_ticket_opened"

    # Not retried: the bad user's items stay out of Customer.io until replayed.
    time.sleep(1.0)
    assert len(requests_about(sim, bad)) == 1

    # Replay the event alone, then everything left.
    sim.unreject_identifier(bad)
    r = admin(svc, "POST", f"dead-letters/{event_dl['id']}/replay")
    assert r.status == 200 and r.json() == {"replayed": 1}, r
    wait_for(lambda: len(sim.events_for(bad)) == 1, timeout=20, what="the replayed event")
    assert sim.events_for(bad)[0]["id"] == recorded["id"]
    r = admin(svc, "POST", "dead-letters/replay")
    assert r.status == 200 and r.json() == {"replayed": 1}, r
    wait_for(lambda: identifies_of(sim, bad), timeout=20, what="the replayed identify")
    wait_drained(redis)
    assert identifies_of(sim, bad)[-1]["has_open_ticket"] is True
    assert dead_letters(svc) == []
    assert len(sim.events_for(bad)) == 1


def test_v1_400_is_dead_lettered_with_customerios_answer(sim, redis, make_service):
    svc = make_service(env=cio_env(sim, CIO_API="v1"))
    bad, good = "u-sync-dl-v1-bad", "u-sync-dl-v1-good"
    sim.reject_identifier(bad, status=400, message="identifier is not valid here")
    t = int(time.time()) - 600
    post_ok(svc, open_conversation(bad, "886000000000011", t))
    post_ok(svc, open_conversation(good, "886000000000012", t))
    wait_for(lambda: len(sim.events_for(good)) == 1, timeout=30, what="the good user")
    wait_for(lambda: len(dead_letters(svc)) == 2, timeout=30, what="two dead letters")
    wait_drained(redis)
    dls = dead_letters(svc)
    assert sorted(d["kind"] for d in dls) == ["event", "identify"]
    for d in dls:
        assert d["user_id"] == bad
        assert d["reason"] == "rejected: HTTP 400", d
        assert d["status"] == 400
        assert json.loads(d["response"]) == {"meta": {"errors": ["identifier is not valid here"]}}
    assert len(requests_about(sim, bad)) == 2          # one PUT, one POST, no retries

    sim.unreject_identifier(bad)
    r = admin(svc, "POST", "dead-letters/replay")
    assert r.status == 200 and r.json() == {"replayed": 2}
    wait_for(lambda: len(sim.events_for(bad)) == 1 and identifies_of(sim, bad), timeout=20,
             what="the replayed items")
    wait_drained(redis)
    assert dead_letters(svc) == []
