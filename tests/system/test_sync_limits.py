"""Values Customer.io would refuse anyway are caught before sending: each becomes one dead
letter with a reason naming the limit, never a retry loop, and the support attributes of
the user still reach Customer.io when only a copied profile attribute is at fault."""
import time

from harness import wait_for
from sync_helpers import (admin, api_requests, cio_env, dead_letters, identifies_of,
                          new_contact, open_conversation, post_ok, wait_drained)
from sync_helpers import redis, sim  # noqa: F401 (fixtures)


def test_oversize_profile_attribute_is_a_dead_letter_not_a_retry_loop(sim, redis,
                                                                      make_service):
    svc = make_service(env=cio_env(sim, SUPPRESS_PROFILE_ATTRIBUTES="bio,plan"))
    u = "u-sync-limit-attr"
    t = int(time.time()) - 600
    bio = "x" * 1500
    post_ok(svc, new_contact(u, t, custom={"bio": bio, "plan": "pro"}))
    post_ok(svc, open_conversation(u, "891000000000001", t + 10))
    wait_for(lambda: dead_letters(svc), timeout=20, what="the dead letter")
    wait_for(lambda: len(sim.events_for(u)) == 2, timeout=20, what="the events")
    wait_drained(redis)

    (dl,) = dead_letters(svc)
    assert dl["user_id"] == u and dl["kind"] == "identify", dl
    assert dl["reason"] == "attribute_value_too_long: bio (1500 bytes, limit 1000)", dl
    assert dl["status"] == 0 and dl["response"] == ""
    # Nothing oversize was sent; the rest of the identify was.
    assert not [r for r in api_requests(sim) if bio.encode() in r["body"]]
    last = identifies_of(sim, u)[-1]
    assert "bio" not in last
    assert last["plan"] == "pro" and last["has_open_ticket"] is True
    assert sorted(e["name"] for e in sim.events_for(u)) == ["intercom_user_synced",
                                                            "support_ticket_opened"]
    # No retry loop: nothing more goes out for this user.
    n = len(api_requests(sim))
    time.sleep(1.0)
    assert len(api_requests(sim)) == n
    assert len(dead_letters(svc)) == 1


def test_overlong_user_id_is_a_dead_letter_and_nothing_is_sent(sim, redis, make_service):
    svc = make_service(env=cio_env(sim))
    u = "u-sync-long-" + "x" * 190                 # 202 bytes: fine for suppressd, not for CIO
    post_ok(svc, open_conversation(u, "891000000000002", int(time.time()) - 60))
    wait_for(lambda: len(dead_letters(svc)) == 2, timeout=20, what="two dead letters")
    wait_drained(redis)
    dls = dead_letters(svc)
    assert sorted(d["kind"] for d in dls) == ["event", "identify"]
    for d in dls:
        assert d["user_id"] == u
        assert d["reason"].startswith("id_too_long"), d
        assert "150 bytes" in d["reason"]
    assert api_requests(sim) == []
    assert admin(svc, "GET", "queue").json()["destinations"]["customerio"]["depth"] == 0
