"""Builders for Intercom notifications, each starting from one of the project's
fixtures (tests/fixtures/intercom/, real delivery shapes) and changing only the fields a
test is about: ids, contacts, state, timestamps. Every builder returns a fresh dict with
a fresh notification id unless one is given."""
import copy
import json
import uuid

from harness import FIXTURES

_cache = {}


def fixture(name):
    """The fixture file `name` (without .json) as a fresh dict."""
    if name not in _cache:
        _cache[name] = json.loads((FIXTURES / f"{name}.json").read_text())
    return copy.deepcopy(_cache[name])


def _envelope(doc, topic, notif_id, created_at):
    doc["topic"] = topic
    doc["id"] = notif_id if notif_id is not None else f"notif_{uuid.uuid4()}"
    if created_at is not None:
        doc["created_at"] = created_at
        doc["first_sent_at"] = created_at + 1
    return doc


def _contacts_2x(users):
    """users: list of (contact_id, external_id or None)."""
    out = []
    for cid, ext in users:
        c = {"type": "contact", "id": cid}
        if ext is not None:
            c["external_id"] = ext
        else:
            c["external_id"] = None
        out.append(c)
    return {"type": "contact.list", "contacts": out}


def conversation(topic="conversation.admin.replied", conv_id="200000000000099",
                 users=(("cid-1", "u-1"),), state="open", created_at=1768000000,
                 updated_at=1768000100, priority=None, rating=None, tags=None,
                 notif_id=None, event_at=None):
    """A 2.x conversation notification. state: open|snoozed|closed (open follows it)."""
    doc = fixture("conversation_admin_replied")
    item = doc["data"]["item"]
    item["id"] = conv_id
    item["created_at"] = created_at
    item["updated_at"] = updated_at
    item["state"] = state
    item["open"] = state in ("open", "snoozed")
    item["contacts"] = _contacts_2x(users)
    if priority is not None:
        item["priority"] = "priority" if priority else "not_priority"
    if rating is not None:
        score, at = rating
        item["conversation_rating"] = {
            "rating": score, "remark": None, "created_at": at, "updated_at": at,
            "contact": {"type": "contact", "id": users[0][0], "external_id": users[0][1]},
            "teammate": {"type": "admin", "id": "7401122"}}
    if tags is not None:
        item["tags"] = {"type": "tag.list", "tags": [
            {"type": "tag", "id": str(1000 + i), "name": name, "applied_at": at,
             "applied_by": {"type": "admin", "id": "7401122"}}
            for i, (name, at) in enumerate(tags)]}
    return _envelope(doc, topic, notif_id, event_at if event_at is not None else updated_at + 1)


def conversation_v1(topic="conversation.admin.replied", conv_id="21330000001",
                    user_id="u-1", contact_id="5c9553cb27e377f24eed4901", user_type="user",
                    state="open", created_at=1553380000, updated_at=1553380100,
                    tags_added=None, notif_id=None):
    """A 1.x conversation notification (item.user)."""
    doc = fixture("conversation_admin_opened.v1")
    item = doc["data"]["item"]
    item["id"] = conv_id
    item["created_at"] = created_at
    item["updated_at"] = updated_at
    item["state"] = state
    item["open"] = state in ("open", "snoozed")
    item["user"]["id"] = contact_id
    item["user"]["user_id"] = user_id
    item["user"]["type"] = user_type
    if tags_added is not None:
        tl = [{"type": "tag", "id": str(2000 + i), "name": n} for i, n in enumerate(tags_added)]
        item["tags"] = {"type": "tag.list", "tags": tl}
        item["tags_added"] = {"type": "tag.list", "tags": tl}
    return _envelope(doc, topic, notif_id, updated_at + 1)


def ticket(topic="ticket.state.updated", ticket_id="300000000000099",
           users=(("cid-1", "u-1"),), category="submitted", state_shape="object",
           created_at=1768000000, updated_at=1768000100, notif_id=None):
    """A 2.x ticket notification; ticket_state as an object {category} or a string."""
    doc = fixture("ticket_state_updated")
    item = doc["data"]["item"]
    item["id"] = ticket_id
    item["created_at"] = created_at
    item["updated_at"] = updated_at
    if state_shape == "object":
        item["ticket_state"] = {"type": "ticket_state", "id": "5100999", "category": category,
                                "internal_label": category.title(),
                                "external_label": category.title()}
    else:
        item["ticket_state"] = category
    item["open"] = category != "resolved"
    item["contacts"] = _contacts_2x(users)
    return _envelope(doc, topic, notif_id, updated_at + 1)


def ticket_closed_contact_only(ticket_id="300000000000099", contact_ids=("cid-1",),
                               created_at=1768000000, updated_at=1768000500, notif_id=None):
    """ticket.closed as Intercom really sends it: contacts carry only {id, role}."""
    doc = fixture("ticket_closed")
    item = doc["data"]["item"]
    item["id"] = ticket_id
    item["created_at"] = created_at
    item["updated_at"] = updated_at
    item["contacts"] = {"type": "contact.list",
                        "contacts": [{"id": cid, "role": "user"} for cid in contact_ids]}
    return _envelope(doc, "ticket.closed", notif_id, updated_at + 1)


def conversation_deleted(conv_id="200000000000099", notif_id=None, event_at=1768000900):
    doc = fixture("conversation_deleted")
    doc["data"]["item"]["conversation_id"] = conv_id
    return _envelope(doc, "conversation.deleted", notif_id, event_at)


def contact_tag(topic="contact.user.tag.created", contact_id="cid-1", external_id="u-1",
                tag="churn-risk", event_at=1768000000, notif_id=None):
    doc = fixture("contact_user_tag_created")
    item = doc["data"]["item"]
    item["tag"]["name"] = tag
    item["contact"]["id"] = contact_id
    item["contact"]["external_id"] = external_id
    item["contact"]["role"] = "lead" if ".lead." in topic else "user"
    return _envelope(doc, topic, notif_id, event_at)


def user_tag_v1(topic="user.tag.created", contact_id="5c9553cb27e377f24eed4901", user_id="u-1",
                tag="churn-risk", event_at=1768000000, notif_id=None):
    doc = fixture("user_tag_created")
    item = doc["data"]["item"]
    item["tag"]["name"] = tag
    item["user"]["id"] = contact_id
    item["user"]["user_id"] = user_id
    item["created_at"] = event_at
    return _envelope(doc, topic, notif_id, event_at)


def contact_created(contact_id="cid-1", external_id="u-1", event_at=1768000000, notif_id=None):
    doc = fixture("contact_user_created")
    item = doc["data"]["item"]
    item["id"] = contact_id
    item["external_id"] = external_id
    return _envelope(doc, "contact.user.created", notif_id, event_at)


def contact_attached(kind="conversation", conv_id="200000000000099", contact_id="cid-2",
                     external_id="u-2", detached=False, event_at=1768000300, notif_id=None,
                     model_created_at=None, model_updated_at=None):
    """conversation.contact.* / ticket.contact.*: item {conversation|ticket, contact}.
    model_created_at / model_updated_at (epoch seconds, optional) set the conversation
    model's ISO times; left alone they keep the fixture's."""
    suffix = "detached" if detached else "attached"
    doc = fixture(f"{kind}_contact_{suffix}")
    item = doc["data"]["item"]
    if kind == "conversation":
        item["conversation"]["model"]["id"] = int(conv_id)
        for field, at in (("created_at", model_created_at), ("updated_at", model_updated_at)):
            if at is not None:
                item["conversation"]["model"][field] = _iso_z(at)
    else:
        item["ticket"]["id"] = int(conv_id)
    item["contact"]["id"] = contact_id
    item["contact"]["external_id"] = external_id
    return _envelope(doc, f"{kind}.contact.{suffix}", notif_id, event_at)


def _iso_z(at):
    import datetime
    return datetime.datetime.fromtimestamp(at, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z")


def ping():
    return fixture("ping")


# --------------------------------------------------------------------------- added builders

def with_notif_id(doc, notif_id):
    """The same notification with its envelope id replaced (None gives a null id)."""
    doc = copy.deepcopy(doc)
    doc["id"] = notif_id
    return doc


def contact_tag_deleted(topic="contact.user.tag.deleted", contact_id="cid-1", external_id="u-1",
                        tag="churn-risk", event_at=1768000000, notif_id=None):
    """contact.user.tag.deleted / contact.lead.tag.deleted, built on the real deleted shape."""
    name = "contact_lead_tag_deleted" if ".lead." in topic else "contact_user_tag_deleted"
    doc = fixture(name)
    item = doc["data"]["item"]
    item["tag"]["name"] = tag
    item["contact"]["id"] = contact_id
    item["contact"]["external_id"] = external_id
    item["contact"]["role"] = "lead" if ".lead." in topic else "user"
    return _envelope(doc, topic, notif_id, event_at)


def user_tag_v1_deleted(contact_id="5c9553cb27e377f24eed4901", user_id="u-1", tag="churn-risk",
                        event_at=1768000000, notif_id=None):
    """1.x user.tag.deleted, built on the real deleted shape."""
    doc = fixture("user_tag_deleted")
    item = doc["data"]["item"]
    item["tag"]["name"] = tag
    item["user"]["id"] = contact_id
    item["user"]["user_id"] = user_id
    item["created_at"] = event_at
    return _envelope(doc, "user.tag.deleted", notif_id, event_at)


def all_fixture_names():
    """Every fixture file name (without .json), sorted."""
    return sorted(p.name[:-len(".json")] for p in FIXTURES.glob("*.json"))
