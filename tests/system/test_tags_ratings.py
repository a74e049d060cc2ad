"""Churn-risk tags, CSAT ratings and priority tickets: the rules with time windows, measured
from the event's own time against the real clock (and against short windows from
SUPPRESS_RULES_FILE)."""
import json
import time

import pytest

from harness import events_key, queue_key
from isolation import redis, svc  # noqa: F401 (fixtures: deliveries stay queued)
from payloads import (contact_tag, contact_tag_deleted, conversation, conversation_v1,
                      user_tag_v1, user_tag_v1_deleted)

DAY = 86400


def post_ok(svc, doc):
    r = svc.webhook(doc)
    assert r.status == 200, (doc.get("topic"), r)
    return r


def reasons(svc, user, campaign):
    r = svc.suppression(user, campaign)
    assert r.status == 200, r
    body = r.json()
    assert body["user_id"] == user and body["campaign"] == campaign, body
    assert body["suppressed"] is bool(body["reasons"]), body
    return body["reasons"]


def empty_like(svc, user):
    """The state of a user never seen, with this user's id."""
    st = svc.user("u-never-seen-reference")
    st["user_id"] = user
    return st


# --------------------------------------------------------------------------- churn tags

def _churn_tag(source, user, cid, tag, at):
    """One churn tag event of each source; `user` None means a lead without external_id."""
    if source == "contact.user.tag.created":
        return contact_tag(topic=source, contact_id=cid, external_id=user, tag=tag, event_at=at)
    if source == "contact.lead.tag.created":
        return contact_tag(topic=source, contact_id=cid, external_id=user, tag=tag, event_at=at)
    if source == "user.tag.created":
        return user_tag_v1(contact_id=cid, user_id=user, tag=tag, event_at=at)
    if source == "conversation_part.tag.created":
        # A conversation opened 20 days ago and tagged now: the tag's time counts.
        return conversation(topic=source, conv_id="510000000000001", users=[(cid, user)],
                            state="open", created_at=at - 20 * DAY, updated_at=at - 300,
                            tags=[(tag, at)], event_at=at)
    if source == "conversation_part.tag.created.v1":
        return conversation_v1(topic="conversation_part.tag.created", conv_id="510000000000002",
                               user_id=user, contact_id=cid, state="open",
                               created_at=at - 20 * DAY, updated_at=at - 1, tags_added=[tag])
    raise AssertionError(source)


SOURCES = ["contact.user.tag.created", "contact.lead.tag.created", "user.tag.created",
           "conversation_part.tag.created", "conversation_part.tag.created.v1"]


@pytest.mark.parametrize("source", SOURCES)
def test_churn_tag_sets_churn_risk(svc, source):
    u, cid = f"u-churn-{source}", f"c-churn-{source}"
    now = int(time.time())
    post_ok(svc, _churn_tag(source, u, cid, "churn-risk", now))
    st = svc.user(u)
    assert st["churn_risk"] is True, st
    assert st["churn_risk_at"] is not None
    # The tag's time, not the conversation's creation 20 days earlier.
    assert now - 2 <= st["churn_risk_at"] <= now + 1, st
    if not source.startswith("conversation_part"):
        assert st["churn_risk_at"] == now
    assert st["suppressed"]["feature_adoption"] is True
    assert reasons(svc, u, "feature_adoption") == ["churn_risk"]
    if not source.startswith("conversation_part"):
        # A churn tag alone suppresses nothing else.
        for c in ("commercial", "expansion", "renewal"):
            assert reasons(svc, u, c) == [], c
    r = svc.check("feature_adoption", ["u-nobody", u])
    assert r.json()["results"] == [
        {"user_id": "u-nobody", "suppressed": False, "reasons": []},
        {"user_id": u, "suppressed": True, "reasons": ["churn_risk"]}]


def test_churn_tag_on_lead_without_external_id(svc):
    cid = "c-churn-lead-only"
    now = int(time.time())
    post_ok(svc, contact_tag(topic="contact.lead.tag.created", contact_id=cid, external_id=None,
                             event_at=now))
    st = svc.user("intercom:" + cid)
    assert st["churn_risk"] is True and st["churn_risk_at"] == now, st


def test_churn_tag_on_group_conversation_marks_every_contact(svc):
    now = int(time.time())
    users = [("c-cg-a", "u-cg-a"), ("c-cg-b", "u-cg-b")]
    post_ok(svc, conversation(topic="conversation_part.tag.created", conv_id="510000000000003",
                              users=users, state="open", created_at=now - 600,
                              updated_at=now - 300, tags=[("churn-risk", now)], event_at=now))
    for _, u in users:
        assert svc.user(u)["churn_risk"] is True, u


@pytest.mark.parametrize("tag", ["Churn-Risk", "CHURN-RISK", "churn-RISK"])
def test_churn_tag_is_case_insensitive(svc, tag):
    u = "u-churn-case"
    now = int(time.time())
    post_ok(svc, contact_tag(contact_id="c-churn-case", external_id=u, tag=tag, event_at=now))
    st = svc.user(u)
    assert st["churn_risk"] is True, st
    assert st["churn_risk_at"] == now


def test_non_churn_tag_changes_nothing(svc, redis):
    u = "u-churn-other"
    now = int(time.time())
    post_ok(svc, contact_tag(contact_id="c-churn-other", external_id=u, tag="vip", event_at=now))
    post_ok(svc, user_tag_v1(contact_id="c-churn-other-v1", user_id=u, tag="churn-risk-low",
                             event_at=now))
    st = svc.user(u)
    ref = empty_like(svc, u)
    # The user's updated_at (time of the latest event seen) is not derived state.
    st.pop("updated_at")
    ref.pop("updated_at")
    assert st == ref
    assert reasons(svc, u, "feature_adoption") == []
    # Nothing for Customer.io either.
    assert redis.cmd("ZSCORE", queue_key(u), u) is None
    assert redis.cmd("LLEN", events_key(u)) == 0


def test_custom_churn_tags(make_service):
    s = make_service(env={"SUPPRESS_CHURN_TAGS": "at-risk,Cancel-Intent"})
    now = int(time.time())
    post_ok(s, contact_tag(contact_id="c-cust-1", external_id="u-cust-1", tag="cancel-intent",
                           event_at=now))
    post_ok(s, contact_tag(contact_id="c-cust-2", external_id="u-cust-2", tag="AT-RISK",
                           event_at=now))
    post_ok(s, contact_tag(contact_id="c-cust-3", external_id="u-cust-3", tag="churn-risk",
                           event_at=now))
    assert s.user("u-cust-1")["churn_risk"] is True
    assert s.user("u-cust-2")["churn_risk"] is True
    st = s.user("u-cust-3")
    assert st["churn_risk"] is False, st
    assert st["churn_risk_at"] is None, st
    r = s.check("feature_adoption", ["u-cust-1", "u-cust-2", "u-cust-3"])
    assert [x["suppressed"] for x in r.json()["results"]] == [True, True, False]


@pytest.mark.parametrize("shape", ["contact.user", "contact.lead", "user.tag (1.x)"])
def test_tag_removal_clears_churn_risk_but_keeps_churn_risk_at(svc, shape):
    u, cid = f"u-untag-{shape}", f"c-untag-{shape}"
    now = int(time.time())
    if shape == "user.tag (1.x)":
        tag = user_tag_v1(contact_id=cid, user_id=u, event_at=now - 100)
        untag = user_tag_v1_deleted(contact_id=cid, user_id=u, event_at=now - 50)
    else:
        tag = contact_tag(topic=f"{shape}.tag.created", contact_id=cid, external_id=u,
                          event_at=now - 100)
        untag = contact_tag_deleted(topic=f"{shape}.tag.deleted", contact_id=cid,
                                    external_id=u, event_at=now - 50)
    post_ok(svc, tag)
    assert svc.user(u)["churn_risk"] is True
    post_ok(svc, untag)
    st = svc.user(u)
    assert st["churn_risk"] is False, st
    assert st["churn_risk_at"] == now - 100, st
    assert reasons(svc, u, "feature_adoption") == []

    # Tagged again after the removal: churn risk again.
    post_ok(svc, contact_tag(contact_id=cid, external_id=u, event_at=now))
    st = svc.user(u)
    assert st["churn_risk"] is True, st
    assert st["churn_risk_at"] == now


def test_removal_older_than_the_tag_does_not_clear_it(svc):
    u = "u-untag-ooo"
    now = int(time.time())
    post_ok(svc, contact_tag(contact_id="c-untag-ooo", external_id=u, event_at=now - 10))
    # A removal from before the tag, delivered late.
    post_ok(svc, contact_tag_deleted(contact_id="c-untag-ooo", external_id=u,
                                     event_at=now - 500))
    st = svc.user(u)
    assert st["churn_risk"] is True, st
    assert st["churn_risk_at"] == now - 10


def test_removal_delivered_before_the_tag_still_wins(svc):
    u = "u-untag-first"
    now = int(time.time())
    post_ok(svc, contact_tag_deleted(contact_id="c-untag-first", external_id=u,
                                     event_at=now - 10))
    post_ok(svc, contact_tag(contact_id="c-untag-first", external_id=u, event_at=now - 100))
    st = svc.user(u)
    assert st["churn_risk"] is False, st
    assert st["churn_risk_at"] == now - 100


def test_removing_another_tag_keeps_churn_risk(svc):
    u = "u-untag-other"
    now = int(time.time())
    post_ok(svc, contact_tag(contact_id="c-untag-other", external_id=u, event_at=now - 100))
    post_ok(svc, contact_tag_deleted(contact_id="c-untag-other", external_id=u, tag="vip",
                                     event_at=now - 50))
    assert svc.user(u)["churn_risk"] is True


def test_older_tag_delivered_later_keeps_latest_churn_risk_at(svc):
    u = "u-churn-latest"
    now = int(time.time())
    post_ok(svc, contact_tag(contact_id="c-churn-latest", external_id=u, event_at=now - 60))
    post_ok(svc, contact_tag(contact_id="c-churn-latest", external_id=u,
                             event_at=now - 20 * DAY))
    st = svc.user(u)
    assert st["churn_risk"] is True, st
    assert st["churn_risk_at"] == now - 60


@pytest.mark.parametrize("age_days,expected", [(15, False), (13, True)])
def test_churn_window_is_14_days(svc, age_days, expected):
    u = f"u-churn-age-{age_days}"
    at = int(time.time()) - age_days * DAY
    post_ok(svc, contact_tag(contact_id=f"c-churn-age-{age_days}", external_id=u, event_at=at))
    st = svc.user(u)
    assert st["churn_risk"] is expected, st
    assert st["churn_risk_at"] == at, st
    assert st["suppressed"]["feature_adoption"] is expected
    assert reasons(svc, u, "feature_adoption") == (["churn_risk"] if expected else [])


def test_feature_adoption_ignores_open_tickets(svc):
    u = "u-fa-ticket"
    now = int(time.time())
    post_ok(svc, conversation(conv_id="520000000000001", users=[("c-fa", u)], state="open",
                              created_at=now - 100, updated_at=now - 50, priority=True))
    assert reasons(svc, u, "feature_adoption") == []
    assert svc.user(u)["suppressed"]["feature_adoption"] is False
    post_ok(svc, contact_tag(contact_id="c-fa", external_id=u, event_at=now))
    assert reasons(svc, u, "feature_adoption") == ["churn_risk"]


# --------------------------------------------------------------------------- CSAT

def _rating(u, cid, conv_id, score, at):
    return conversation(topic="conversation.rating.added", conv_id=conv_id, users=[(cid, u)],
                        state="closed", created_at=at - 3600, updated_at=at,
                        rating=(score, at), event_at=at)


@pytest.mark.parametrize("score", [1, 2])
def test_recent_low_csat_suppresses_renewal(svc, score):
    u = f"u-csat-low-{score}"
    now = int(time.time())
    post_ok(svc, _rating(u, "c-csat", "530000000000001", score, now))
    st = svc.user(u)
    assert st["last_csat"] == {"score": score, "at": now, "ticket_id": "530000000000001"}, st
    assert st["has_open_ticket"] is False
    assert st["suppressed"] == {"commercial": False, "expansion": False, "renewal": True,
                                "feature_adoption": False}, st
    assert reasons(svc, u, "renewal") == ["low_csat"]
    assert reasons(svc, u, "commercial") == []
    r = svc.check("renewal", [u])
    assert r.json()["results"] == [{"user_id": u, "suppressed": True, "reasons": ["low_csat"]}]


@pytest.mark.parametrize("score", [3, 4, 5])
def test_good_csat_does_not_suppress(svc, score):
    u = f"u-csat-good-{score}"
    now = int(time.time())
    post_ok(svc, _rating(u, "c-csat-good", "530000000000002", score, now))
    st = svc.user(u)
    assert st["last_csat"] == {"score": score, "at": now, "ticket_id": "530000000000002"}, st
    assert reasons(svc, u, "renewal") == []


def test_low_csat_older_than_30_days_does_not_suppress(svc):
    u = "u-csat-old"
    at = int(time.time()) - 31 * DAY
    post_ok(svc, _rating(u, "c-csat-old", "530000000000003", 2, at))
    st = svc.user(u)
    assert st["last_csat"] == {"score": 2, "at": at, "ticket_id": "530000000000003"}, st
    assert reasons(svc, u, "renewal") == []
    # 29 days old still counts.
    u2 = "u-csat-29"
    at2 = int(time.time()) - 29 * DAY
    post_ok(svc, _rating(u2, "c-csat-29", "530000000000004", 2, at2))
    assert reasons(svc, u2, "renewal") == ["low_csat"]


def test_later_good_rating_replaces_low_one(svc):
    u = "u-csat-replace"
    now = int(time.time())
    post_ok(svc, _rating(u, "c-csat-r", "530000000000005", 2, now - 600))
    assert reasons(svc, u, "renewal") == ["low_csat"]
    post_ok(svc, _rating(u, "c-csat-r", "530000000000006", 5, now - 60))
    assert svc.user(u)["last_csat"] == {"score": 5, "at": now - 60,
                                        "ticket_id": "530000000000006"}
    assert reasons(svc, u, "renewal") == []


def test_renewal_reasons_order_open_ticket_then_low_csat(svc):
    u = "u-csat-open"
    now = int(time.time())
    post_ok(svc, _rating(u, "c-csat-o", "530000000000007", 1, now - 60))
    post_ok(svc, conversation(conv_id="530000000000008", users=[("c-csat-o", u)], state="open",
                              created_at=now - 30, updated_at=now - 20))
    assert reasons(svc, u, "renewal") == ["open_ticket", "low_csat"]


# --------------------------------------------------------------------------- priority

def test_recent_priority_ticket_suppresses_expansion_even_after_close(svc):
    u = "u-prio"
    now = int(time.time())
    conv = "540000000000001"
    post_ok(svc, conversation(topic="conversation.priority.updated", conv_id=conv,
                              users=[("c-prio", u)], state="open", created_at=now - 3600,
                              updated_at=now - 60, priority=True))
    st = svc.user(u)
    (t,) = st["open_tickets"]
    assert t["priority"] is True and t["opened_at"] == now - 3600, t
    assert reasons(svc, u, "expansion") == ["open_ticket", "recent_priority_ticket"]
    assert reasons(svc, u, "commercial") == ["open_ticket"]
    assert reasons(svc, u, "renewal") == ["open_ticket"]
    r = svc.check("expansion", [u])
    assert r.json()["results"] == [{"user_id": u, "suppressed": True,
                                    "reasons": ["open_ticket", "recent_priority_ticket"]}]

    post_ok(svc, conversation(topic="conversation.admin.closed", conv_id=conv,
                              users=[("c-prio", u)], state="closed", created_at=now - 3600,
                              updated_at=now - 30, priority=True))
    st = svc.user(u)
    assert st["has_open_ticket"] is False
    assert st["suppressed"] == {"commercial": False, "expansion": True, "renewal": False,
                                "feature_adoption": False}, st
    assert reasons(svc, u, "expansion") == ["recent_priority_ticket"]
    assert reasons(svc, u, "commercial") == []


def test_priority_ticket_opened_more_than_7_days_ago_does_not_count(svc):
    u = "u-prio-old"
    now = int(time.time())
    post_ok(svc, conversation(conv_id="540000000000002", users=[("c-prio-old", u)],
                              state="open", created_at=now - 8 * DAY, updated_at=now - 60,
                              priority=True))
    assert reasons(svc, u, "expansion") == ["open_ticket"]
    post_ok(svc, conversation(conv_id="540000000000002", users=[("c-prio-old", u)],
                              state="closed", created_at=now - 8 * DAY, updated_at=now - 30,
                              priority=True))
    assert reasons(svc, u, "expansion") == []


def test_non_priority_ticket_gives_only_open_ticket(svc):
    u = "u-prio-none"
    now = int(time.time())
    post_ok(svc, conversation(conv_id="540000000000003", users=[("c-prio-none", u)],
                              state="open", created_at=now - 60, updated_at=now - 30,
                              priority=False))
    assert svc.user(u)["open_tickets"][0]["priority"] is False
    assert reasons(svc, u, "expansion") == ["open_ticket"]
    post_ok(svc, conversation(conv_id="540000000000003", users=[("c-prio-none", u)],
                              state="closed", created_at=now - 60, updated_at=now - 20,
                              priority=False))
    assert reasons(svc, u, "expansion") == []


# --------------------------------------------------------------------------- short windows

def test_windows_from_rules_file_elapse_in_real_time(make_service, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"windows": {"recent_priority_ticket": 2, "low_csat": 2,
                                             "churn_risk": 2}}))
    s = make_service(env={"SUPPRESS_RULES_FILE": str(rules)})
    u = "u-short"
    t = int(time.time())
    post_ok(s, conversation(conv_id="550000000000001", users=[("c-short", u)], state="closed",
                            created_at=t, updated_at=t, priority=True, rating=(1, t),
                            event_at=t, topic="conversation.rating.added"))
    post_ok(s, contact_tag(contact_id="c-short", external_id=u, event_at=t))
    # Checked well inside the 2-second windows.
    st = s.user(u)
    assert time.time() - t < 2, "too slow to check inside the window"
    assert st["churn_risk"] is True, st
    assert st["suppressed"] == {"commercial": False, "expansion": True, "renewal": True,
                                "feature_adoption": True}, st
    assert reasons(s, u, "expansion") == ["recent_priority_ticket"]
    assert reasons(s, u, "renewal") == ["low_csat"]
    assert reasons(s, u, "feature_adoption") == ["churn_risk"]

    time.sleep(max(0.0, t + 3.2 - time.time()))
    st = s.user(u)
    assert st["churn_risk"] is False, st
    assert st["churn_risk_at"] == t
    assert st["last_csat"] == {"score": 1, "at": t, "ticket_id": "550000000000001"}
    assert st["suppressed"] == {"commercial": False, "expansion": False, "renewal": False,
                                "feature_adoption": False}, st
    for c in ("expansion", "renewal", "feature_adoption"):
        assert reasons(s, u, c) == [], c
    r = s.check("renewal", [u])
    assert r.json()["results"] == [{"user_id": u, "suppressed": False, "reasons": []}]


def test_older_low_rating_delivered_after_newer_good_one_does_not_count(svc):
    u = "u-csat-ooo"
    now = int(time.time())
    post_ok(svc, _rating(u, "c-csat-ooo", "530000000000010", 5, now - 60))
    post_ok(svc, _rating(u, "c-csat-ooo", "530000000000011", 1, now - 600))
    assert svc.user(u)["last_csat"] == {"score": 5, "at": now - 60,
                                        "ticket_id": "530000000000010"}
    assert reasons(svc, u, "renewal") == []
