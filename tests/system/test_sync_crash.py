"""A replica killed (SIGKILL) while its request to Customer.io is in flight loses
nothing: the leased work stays in Redis, and once the lease runs out another process
delivers it, under the same event ids (so Customer.io drops the copy it may already
have applied)."""
import signal
import time

import pytest

from harness import events_key, queue_key, wait_for
from sync_helpers import (api_requests, churn_tag, cio_env, identifies_of, open_conversation,
                          post_ok, wait_drained)
from sync_helpers import redis, sim  # noqa: F401 (fixtures)


@pytest.mark.parametrize("applied", [False, True], ids=["unanswered", "applied-unanswered"])
def test_sigkill_mid_send_then_restart_delivers_the_leased_work(sim, redis, make_service,
                                                                applied):
    env = cio_env(sim, SUPPRESS_SYNC_LEASE_MS=1500)
    first = make_service(env=env)
    u = f"u-sync-crash-{int(applied)}"
    if applied:
        sim.delay_next(1, 30.0, process_first=True)   # applied, answered far too late
    else:
        sim.hold_next(1)                               # never applied, never answered
    t = int(time.time()) - 600
    # One webhook carrying two events (the open, and the tag it was opened with).
    doc = open_conversation(u, "883000000000001", t)
    post_ok(first, doc)
    post_ok(first, churn_tag(u, t + 5))
    wait_for(lambda: len(api_requests(sim)) >= 1, timeout=20, what="the request in flight")
    in_flight = api_requests(sim)[0]
    sent = [op for op in in_flight["json"]["batch"] if op["action"] == "event"]
    assert sent, in_flight["json"]

    first.stop(sig=signal.SIGKILL)
    # Everything is still in Redis: the user queued, its events listed.
    assert redis.cmd("ZSCORE", queue_key(u), u) is not None
    assert redis.cmd("LLEN", events_key(u)) == 2
    if not applied:
        assert sim.events_for(u) == []

    second = make_service(env=env)
    wait_for(lambda: len(sim.events_for(u)) == 2, timeout=30, what="both events delivered")
    wait_drained(redis)
    evs = sim.events_for(u)
    assert sorted(e["name"] for e in evs) == ["support_tag_applied", "support_ticket_opened"]
    # The events the dead process had on the wire were re-sent under the same ids.
    assert {op["id"] for op in sent} <= {e["id"] for e in evs}
    if applied:
        assert sim.event_duplicates == len(sent)
    last = identifies_of(sim, u)[-1]
    assert last["has_open_ticket"] is True and last["churn_risk"] is True
    assert second.user(u)["open_ticket_count"] == 1
