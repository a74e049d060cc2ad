"""Identity: external_id / user.user_id, intercom:<contact id> for contacts without one,
contact-id links learned from any payload, group conversations, attach/detach."""
import time

import pytest

from payloads import (contact_attached, contact_created, contact_tag, conversation,
                      conversation_deleted,
                      conversation_v1, ticket, ticket_closed_contact_only)


def post_ok(svc, doc):
    r = svc.webhook(doc)
    assert r.status == 200, (doc.get("topic"), r)
    return r


def open_ids(svc, user):
    return sorted(t["id"] for t in svc.user(user)["open_tickets"])


def assert_empty(svc, user):
    st = svc.user(user)
    assert st["user_id"] == user
    assert st["has_open_ticket"] is False, st
    assert st["open_ticket_count"] == 0, st
    assert st["open_tickets"] == [], st
    assert st["churn_risk"] is False, st
    assert st["churn_risk_at"] is None, st
    assert st["last_csat"] is None, st
    assert st["suppressed"] == {"commercial": False, "expansion": False, "renewal": False,
                                "feature_adoption": False}, st


T0 = int(time.time()) - 3600


# --------------------------------------------------------------------------- leads

def _link(how, cid, user):
    if how == "contact.user.created":
        return contact_created(contact_id=cid, external_id=user, event_at=T0 + 400)
    if how == "2.x conversation":
        return conversation(topic="conversation.user.created", conv_id="410000000000099",
                            users=[(cid, user)], state="closed", created_at=T0 + 300,
                            updated_at=T0 + 400)
    return conversation_v1(topic="conversation.user.created", conv_id="410000000000099",
                           user_id=user, contact_id=cid, state="closed",
                           created_at=T0 + 300, updated_at=T0 + 400)


@pytest.mark.parametrize("how", ["contact.user.created", "2.x conversation", "1.x conversation"])
def test_lead_state_moves_to_user_once_linked(svc, how):
    cid, u = "c-lead-move", "u-lead-move"
    post_ok(svc, conversation(topic="conversation.admin.open.assigned", conv_id="410000000000001",
                              users=[(cid, None)], state="open", created_at=T0,
                              updated_at=T0 + 100))
    lead = svc.user("intercom:" + cid)
    assert lead["has_open_ticket"] is True, lead
    assert [t["id"] for t in lead["open_tickets"]] == ["410000000000001"]
    assert svc.user("intercom:" + cid)["suppressed"]["commercial"] is True
    assert_empty(svc, u)

    post_ok(svc, _link(how, cid, u))
    st = svc.user(u)
    assert open_ids(svc, u) == ["410000000000001"], st
    (t,) = st["open_tickets"]
    assert t["state"] == "open" and t["kind"] == "conversation"
    assert t["updated_at"] == T0 + 100
    assert svc.suppression(u, "commercial").json()["suppressed"] is True
    assert_empty(svc, "intercom:" + cid)

    # Later deliveries that still carry no external_id land on the user.
    post_ok(svc, conversation(topic="conversation.admin.closed", conv_id="410000000000001",
                              users=[(cid, None)], state="closed", created_at=T0,
                              updated_at=T0 + 500))
    assert open_ids(svc, u) == []
    assert_empty(svc, "intercom:" + cid)


def test_linking_merges_lead_state_with_existing_user_state(svc):
    cid, u = "c-lead-merge", "u-lead-merge"
    post_ok(svc, conversation(conv_id="410000000000002", users=[("c-other-merge", u)],
                              state="open", created_at=T0, updated_at=T0 + 100))
    post_ok(svc, conversation(conv_id="410000000000003", users=[(cid, None)], state="open",
                              created_at=T0, updated_at=T0 + 100))
    post_ok(svc, contact_created(contact_id=cid, external_id=u, event_at=T0 + 200))
    st = svc.user(u)
    assert st["open_ticket_count"] == 2, st
    assert open_ids(svc, u) == ["410000000000002", "410000000000003"]
    assert_empty(svc, "intercom:" + cid)


def test_lead_churn_tag_moves_to_user_once_linked(svc):
    cid, u = "c-lead-churn", "u-lead-churn"
    now = int(time.time())
    post_ok(svc, contact_tag(topic="contact.lead.tag.created", contact_id=cid, external_id=None,
                             tag="churn-risk", event_at=now))
    lead = svc.user("intercom:" + cid)
    assert lead["churn_risk"] is True, lead
    assert lead["churn_risk_at"] == now
    post_ok(svc, contact_created(contact_id=cid, external_id=u, event_at=now))
    st = svc.user(u)
    assert st["churn_risk"] is True, st
    assert st["churn_risk_at"] == now
    assert st["suppressed"]["feature_adoption"] is True
    assert_empty(svc, "intercom:" + cid)


def test_v1_lead_without_user_id_is_kept_under_contact_id(svc):
    cid = "5c9553cb27e377f24eed4a01"
    post_ok(svc, conversation_v1(topic="conversation.user.created", conv_id="410000000000004",
                                 user_id=None, contact_id=cid, user_type="lead", state="open",
                                 created_at=T0, updated_at=T0 + 100))
    assert open_ids(svc, "intercom:" + cid) == ["410000000000004"]


# --------------------------------------------------------------------------- learned links

def test_ticket_closed_with_only_contact_id_closes_the_learned_users_ticket(svc):
    cid, u = "c-tclosed", "u-tclosed"
    post_ok(svc, ticket(topic="ticket.created", ticket_id="420000000000001", users=[(cid, u)],
                        category="submitted", created_at=T0, updated_at=T0 + 100))
    assert open_ids(svc, u) == ["420000000000001"]
    post_ok(svc, ticket_closed_contact_only(ticket_id="420000000000001", contact_ids=(cid,),
                                            created_at=T0, updated_at=T0 + 500))
    st = svc.user(u)
    assert st["has_open_ticket"] is False, st
    assert st["open_tickets"] == []
    assert svc.suppression(u, "commercial").json()["suppressed"] is False
    assert_empty(svc, "intercom:" + cid)


def test_contact_user_created_links_the_contact_id(svc):
    cid, u = "c-created-link", "u-created-link"
    post_ok(svc, contact_created(contact_id=cid, external_id=u, event_at=T0))
    # A conversation whose contact carries no external_id, then a contact-only ticket.closed.
    post_ok(svc, conversation(conv_id="430000000000001", users=[(cid, None)], state="open",
                              created_at=T0, updated_at=T0 + 100))
    post_ok(svc, ticket(topic="ticket.created", ticket_id="430000000000002",
                        users=[(cid, None)], category="submitted", created_at=T0,
                        updated_at=T0 + 100))
    assert open_ids(svc, u) == ["430000000000001", "430000000000002"]
    assert_empty(svc, "intercom:" + cid)
    post_ok(svc, ticket_closed_contact_only(ticket_id="430000000000002", contact_ids=(cid,),
                                            created_at=T0, updated_at=T0 + 500))
    assert open_ids(svc, u) == ["430000000000001"]
    assert_empty(svc, "intercom:" + cid)


def test_reserved_characters_in_user_ids_round_trip(svc):
    u = "user+1@example.com/a b%"
    post_ok(svc, conversation(conv_id="440000000000001", users=[("c-reserved", u)],
                              state="open", created_at=T0, updated_at=T0 + 100))
    st = svc.user(u)
    assert st["user_id"] == u
    assert open_ids(svc, u) == ["440000000000001"]
    r = svc.check("commercial", [u])
    assert r.json()["results"] == [{"user_id": u, "suppressed": True,
                                    "reasons": ["open_ticket"]}]


# --------------------------------------------------------------------------- several contacts

def test_group_conversation_gives_every_contact_the_ticket(svc):
    ua, ub, lead_cid = "u-group-a", "u-group-b", "c-group-lead"
    users = [("c-group-a", ua), ("c-group-b", ub), (lead_cid, None)]
    post_ok(svc, conversation(conv_id="450000000000001", users=users, state="open",
                              created_at=T0, updated_at=T0 + 100))
    for u in (ua, ub, "intercom:" + lead_cid):
        assert open_ids(svc, u) == ["450000000000001"], u
    r = svc.check("renewal", [ua, ub])
    assert [x["suppressed"] for x in r.json()["results"]] == [True, True]
    post_ok(svc, conversation(conv_id="450000000000001", users=users, state="closed",
                              created_at=T0, updated_at=T0 + 200))
    for u in (ua, ub, "intercom:" + lead_cid):
        assert open_ids(svc, u) == [], u
    r = svc.check("renewal", [ua, ub])
    assert [x["suppressed"] for x in r.json()["results"]] == [False, False]


@pytest.mark.parametrize("kind", ["conversation", "ticket"])
def test_attach_adds_and_detach_removes_only_that_contact(svc, kind):
    ua, ub = f"u-att-a-{kind}", f"u-att-b-{kind}"
    tid = "460000000000001" if kind == "conversation" else "360000000000001"
    if kind == "conversation":
        post_ok(svc, conversation(conv_id=tid, users=[("c-att-a", ua)], state="open",
                                  created_at=T0, updated_at=T0 + 100))
    else:
        post_ok(svc, ticket(topic="ticket.created", ticket_id=tid, users=[("c-att-a", ua)],
                            category="submitted", created_at=T0, updated_at=T0 + 100))
    post_ok(svc, contact_attached(kind=kind, conv_id=tid, contact_id="c-att-b", external_id=ub,
                                  event_at=T0 + 200, model_created_at=T0,
                                  model_updated_at=T0 + 200))
    st = svc.user(ub)
    assert st["has_open_ticket"] is True, st
    (t,) = st["open_tickets"]
    assert t["id"] == tid and t["state"] == "open"
    assert t["kind"] == kind
    assert open_ids(svc, ua) == [tid]

    # The detach part bumps the conversation's updated_at, as Intercom's does.
    post_ok(svc, contact_attached(kind=kind, conv_id=tid, contact_id="c-att-b", external_id=ub,
                                  detached=True, event_at=T0 + 300, model_created_at=T0,
                                  model_updated_at=T0 + 300))
    assert svc.user(ub)["has_open_ticket"] is False
    assert open_ids(svc, ub) == []
    assert open_ids(svc, ua) == [tid]
    assert svc.suppression(ub, "commercial").json()["suppressed"] is False
    assert svc.suppression(ua, "commercial").json()["suppressed"] is True


def test_attached_contact_is_closed_with_the_conversation(svc):
    ua, ub = "u-attc-a", "u-attc-b"
    tid = "470000000000001"
    post_ok(svc, conversation(conv_id=tid, users=[("c-attc-a", ua)], state="open",
                              created_at=T0, updated_at=T0 + 100))
    post_ok(svc, contact_attached(conv_id=tid, contact_id="c-attc-b", external_id=ub,
                                  event_at=T0 + 200, model_created_at=T0,
                                  model_updated_at=T0 + 200))
    assert open_ids(svc, ub) == [tid]
    post_ok(svc, conversation(topic="conversation.admin.closed", conv_id=tid,
                              users=[("c-attc-a", ua), ("c-attc-b", ub)], state="closed",
                              created_at=T0, updated_at=T0 + 300))
    assert open_ids(svc, ua) == []
    assert open_ids(svc, ub) == []


def test_moved_ticket_is_deleted_and_detached_from_the_user(svc):
    cid, u = "c-lead-del", "u-lead-del"
    post_ok(svc, conversation(conv_id="480000000000001", users=[(cid, None)], state="open",
                              created_at=T0, updated_at=T0 + 100))
    post_ok(svc, conversation(conv_id="480000000000002", users=[(cid, None)], state="open",
                              created_at=T0, updated_at=T0 + 100))
    post_ok(svc, contact_created(contact_id=cid, external_id=u, event_at=T0 + 200))
    assert open_ids(svc, u) == ["480000000000001", "480000000000002"]
    post_ok(svc, conversation_deleted(conv_id="480000000000001", event_at=T0 + 300))
    assert open_ids(svc, u) == ["480000000000002"]
    post_ok(svc, contact_attached(conv_id="480000000000002", contact_id=cid, external_id=u,
                                  detached=True, event_at=T0 + 400, model_updated_at=T0 + 400))
    assert open_ids(svc, u) == []
    assert_empty(svc, "intercom:" + cid)


@pytest.mark.parametrize("kind", ["conversation", "ticket"])
def test_late_attach_after_close_does_not_reopen_for_the_contact(svc, kind):
    """B was attached while the ticket was open; the close (listing both contacts) arrives
    first, the attach later. Intercom says the ticket is closed: B has no open ticket."""
    ua, ub = f"u-lattach-a-{kind}", f"u-lattach-b-{kind}"
    tid = "490000000000001" if kind == "conversation" else "390000000000001"
    both = [("c-lattach-a", ua), ("c-lattach-b", ub)]
    if kind == "conversation":
        post_ok(svc, conversation(conv_id=tid, users=[("c-lattach-a", ua)], state="open",
                                  created_at=T0, updated_at=T0 + 100))
        post_ok(svc, conversation(topic="conversation.admin.closed", conv_id=tid, users=both,
                                  state="closed", created_at=T0, updated_at=T0 + 500))
    else:
        post_ok(svc, ticket(topic="ticket.created", ticket_id=tid, users=[("c-lattach-a", ua)],
                            category="submitted", created_at=T0, updated_at=T0 + 100))
        post_ok(svc, ticket(topic="ticket.state.updated", ticket_id=tid, users=both,
                            category="resolved", created_at=T0, updated_at=T0 + 500))
    assert open_ids(svc, ua) == [] and open_ids(svc, ub) == []
    post_ok(svc, contact_attached(kind=kind, conv_id=tid, contact_id="c-lattach-b",
                                  external_id=ub, event_at=T0 + 200, model_created_at=T0,
                                  model_updated_at=T0 + 200))
    st = svc.user(ub)
    assert st["open_tickets"] == [], st
    assert st["has_open_ticket"] is False
    assert svc.suppression(ub, "commercial").json()["suppressed"] is False


@pytest.mark.parametrize("kind", ["conversation", "ticket"])
def test_detach_delivered_before_older_attach_leaves_contact_detached(svc, kind):
    """Attached at T0+200, detached at T0+300; the detach arrives first. Deliveries are
    unordered, so B must end without the ticket, and stay so when it closes for A."""
    ua, ub = f"u-dfirst-a-{kind}", f"u-dfirst-b-{kind}"
    tid = "491000000000001" if kind == "conversation" else "391000000000001"
    if kind == "conversation":
        post_ok(svc, conversation(conv_id=tid, users=[("c-dfirst-a", ua)], state="open",
                                  created_at=T0, updated_at=T0 + 100))
    else:
        post_ok(svc, ticket(topic="ticket.created", ticket_id=tid, users=[("c-dfirst-a", ua)],
                            category="submitted", created_at=T0, updated_at=T0 + 100))
    post_ok(svc, contact_attached(kind=kind, conv_id=tid, contact_id="c-dfirst-b",
                                  external_id=ub, detached=True, event_at=T0 + 300,
                                  model_created_at=T0, model_updated_at=T0 + 300))
    post_ok(svc, contact_attached(kind=kind, conv_id=tid, contact_id="c-dfirst-b",
                                  external_id=ub, event_at=T0 + 200, model_created_at=T0,
                                  model_updated_at=T0 + 200))
    assert open_ids(svc, ub) == [], svc.user(ub)
    assert open_ids(svc, ua) == [tid]
    # The ticket closes; Intercom lists only A now (B was detached).
    if kind == "conversation":
        post_ok(svc, conversation(topic="conversation.admin.closed", conv_id=tid,
                                  users=[("c-dfirst-a", ua)], state="closed", created_at=T0,
                                  updated_at=T0 + 500))
    else:
        post_ok(svc, ticket(ticket_id=tid, users=[("c-dfirst-a", ua)], category="resolved",
                            created_at=T0, updated_at=T0 + 500))
    assert open_ids(svc, ua) == []
    assert open_ids(svc, ub) == [], svc.user(ub)
    assert svc.suppression(ub, "commercial").json()["suppressed"] is False
