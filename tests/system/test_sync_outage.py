"""A 60-second Customer.io outage (30 s answering 503, then 30 s refusing connections)
loses nothing: changes recorded before and during it all reach Customer.io once it is
back, promptly (the backoff of users who failed many times must not keep them waiting
minutes after Customer.io recovered), each event once, nothing dead-lettered.

This test takes about 65 s by construction: the outage is the contract's example."""
import time

from harness import wait_for
from sync_helpers import (api_requests, churn_tag, cio_env, close_conversation, dead_letters,
                          identifies_of, open_conversation, post_ok, sent_event_ids,
                          wait_drained)
from sync_helpers import redis, sim  # noqa: F401 (fixtures)


OUTAGE_503_S = 30
OUTAGE_REFUSED_S = 30


def test_a_60_second_outage_loses_nothing(sim, redis, make_service):
    svc = make_service(env=cio_env(sim, CIO_TIMEOUT_MS=2000))
    users = [f"u-sync-outage-{i}" for i in range(4)]
    t = int(time.time()) - 3600
    # Healthy first.
    post_ok(svc, open_conversation(users[0], "884000000000000", t))
    wait_for(lambda: len(sim.events_for(users[0])) == 1, timeout=20, what="healthy delivery")
    wait_drained(redis)

    start = time.monotonic()

    def at(seconds):
        wait_for(lambda: time.monotonic() - start >= seconds, timeout=seconds + 30,
                 interval=0.1, what=f"{seconds}s into the outage")

    sim.fail_for(OUTAGE_503_S, status=503)
    post_ok(svc, close_conversation(users[0], "884000000000000", t, t + 100))
    post_ok(svc, open_conversation(users[1], "884000000000001", t + 1))
    at(10)
    post_ok(svc, churn_tag(users[1], t + 200))
    post_ok(svc, open_conversation(users[2], "884000000000002", t + 2))
    at(OUTAGE_503_S)
    failed_503 = sim.statuses().count(503)
    sim.stop()                                    # connection refused from here
    post_ok(svc, open_conversation(users[3], "884000000000003", t + 3))
    at(OUTAGE_503_S + 15)
    post_ok(svc, close_conversation(users[2], "884000000000002", t + 2, t + 300))
    at(OUTAGE_503_S + OUTAGE_REFUSED_S)
    sim.start()
    back = time.monotonic()
    assert failed_503 >= 3, "the service did not try during the 503 phase"

    expected = {users[0]: ["support_ticket_opened", "support_ticket_resolved"],
                users[1]: ["support_tag_applied", "support_ticket_opened"],
                users[2]: ["support_ticket_opened", "support_ticket_resolved"],
                users[3]: ["support_ticket_opened"]}

    def delivered():
        return all(sorted(e["name"] for e in sim.events_for(u)) == names
                   for u, names in expected.items())

    wait_for(delivered, timeout=120, interval=0.1, what="everything delivered after the outage")
    took = time.monotonic() - back
    wait_drained(redis)
    assert took < 10, f"delivery resumed {took:.1f}s after Customer.io came back"

    for u in users:
        st = svc.user(u)
        last = identifies_of(sim, u)[-1]
        assert (last["has_open_ticket"], last["open_ticket_count"], last["churn_risk"]) == \
            (st["has_open_ticket"], st["open_ticket_count"], st["churn_risk"]), (u, last, st)
        evs = sim.events_for(u)
        assert len({e["id"] for e in evs}) == len(evs)
    for key, ids in sent_event_ids(sim).items():
        assert len(ids) == 1, f"{key} was sent under several ids: {ids}"
    assert dead_letters(svc) == []
    assert len(api_requests(sim)) < 400, "the service hammered Customer.io during the outage"
