"""CIO_RATE_LIMIT is one budget for all replicas (kept in Redis): two running replicas,
both sending, never put more than the limit into any one-second window as Customer.io
sees it."""
import time

from harness import wait_for
from sync_helpers import (api_requests, cio_env, identifies_of, metric, open_conversation,
                          post_ok, wait_drained)
from sync_helpers import redis, sim  # noqa: F401 (fixtures)


LIMIT = 5


def test_rate_limit_holds_across_two_replicas(sim, redis, make_service):
    # v1: one request per identify and per event, so 10 users make 20 requests.
    env = cio_env(sim, CIO_API="v1", CIO_RATE_LIMIT=LIMIT, SUPPRESS_SYNC_LEASE_MS=30000)
    a = make_service(env=env)
    b = make_service(env=env)
    users = [f"u-sync-rate-{i}" for i in range(10)]
    t = int(time.time()) - 600
    for i, u in enumerate(users):
        post_ok(a if i % 2 else b, open_conversation(u, f"88500000000{i:04d}", t + i))

    wait_for(lambda: all(len(sim.events_for(u)) == 1 for u in users), timeout=60,
             interval=0.1, what="every user delivered")
    wait_drained(redis)
    reqs = api_requests(sim)
    assert len(reqs) >= 2 * len(users)
    assert all(r["status"] == 200 for r in reqs)
    busiest = sim.max_requests_in_window(1.0)
    assert sim.event_duplicates == 0 and len(reqs) == 2 * len(users), "work sent twice"
    span = reqs[-1]["time"] - reqs[0]["time"]
    assert busiest <= LIMIT, f"{busiest} requests within one second (limit {LIMIT})"
    # 20 requests at 5 per second take more than 3 s; both replicas took part.
    assert span >= (len(reqs) - LIMIT) / LIMIT - 0.5, span
    sent = {}
    for name, s in (("a", a), ("b", b)):
        sent[name] = metric(s, "suppressd_cio_requests_total", {"outcome": "sent"})
    assert sent["a"] > 0 and sent["b"] > 0, sent
    assert sent["a"] + sent["b"] == len(reqs)
    assert metric(a, "suppressd_cio_rate_limit_waits_total") + \
        metric(b, "suppressd_cio_rate_limit_waits_total") > 0


def test_rounds_waiting_for_the_rate_limit_never_outlive_their_lease(sim, redis,
                                                                      make_service):
    """A lease shorter than the rate-limited send of what was leased: what cannot go out
    before the lease runs out is left to the next lease, so no other worker ever finds
    work still in flight, and no event goes out twice."""
    limit = 4
    env = cio_env(sim, CIO_API="v1", CIO_RATE_LIMIT=limit, SUPPRESS_SYNC_LEASE_MS=2500,
                  CIO_TIMEOUT_MS=1000)
    a = make_service(env=env)
    b = make_service(env=env)
    users = [f"u-sync-lease-{i}" for i in range(8)]
    t = int(time.time()) - 600
    for i, u in enumerate(users):
        post_ok(a if i % 2 else b, open_conversation(u, f"88510000000{i:04d}", t + i))
    wait_for(lambda: all(len(sim.events_for(u)) == 1 for u in users), timeout=60,
             interval=0.1, what="every user delivered")
    wait_drained(redis)
    assert sim.event_duplicates == 0
    event_posts = [r for r in api_requests(sim) if r["method"] == "POST"]
    assert len(event_posts) == len(users), [r["path"] for r in event_posts]
    for u in users:
        assert identifies_of(sim, u)[-1]["has_open_ticket"] is True
    assert sim.max_requests_in_window(1.0) <= limit
