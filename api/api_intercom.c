/* api_intercom: Intercom webhook payloads -> struct state_change. See api_intercom.h. */
#include "api/api_intercom.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "api/api_jarena.h"
#include "api/api_jskim.h"

/* How a topic's item is read. */
enum handler {
    H_IGNORE = 0,
    H_PING,
    H_CONVERSATION,     /* item is a conversation (or ticket) object */
    H_CONV_DELETED,     /* item is {type, conversation_id} */
    H_CONV_CONTACT,     /* item is {conversation: {model, parts}, contact} */
    H_TICKET,           /* item is a ticket object (2.15+: nested under item.ticket) */
    H_TICKET_CONTACT,   /* item is {ticket: {id, state}, contact} */
    H_CONTACT_TAG,      /* item is {type: contact_tag, tag, contact} */
    H_USER_TAG,         /* 1.x item is {type: user_tag, tag, user} */
    H_CONTACT,          /* item is a contact */
    H_MERGED,           /* item is the surviving contact */
};

static const struct {
    const char *topic;
    enum handler h;
} topics[] = {
    {"ping", H_PING},
    {"conversation.user.created", H_CONVERSATION},
    {"conversation.user.replied", H_CONVERSATION},
    {"conversation.admin.single.created", H_CONVERSATION},
    {"conversation.admin.opened", H_CONVERSATION},
    {"conversation.admin.closed", H_CONVERSATION},
    {"conversation.admin.snoozed", H_CONVERSATION},
    {"conversation.admin.unsnoozed", H_CONVERSATION},
    {"conversation.admin.replied", H_CONVERSATION},
    {"conversation.admin.assigned", H_CONVERSATION},
    {"conversation.admin.open.assigned", H_CONVERSATION},
    {"conversation.admin.noted", H_CONVERSATION},
    {"conversation.operator.replied", H_CONVERSATION},
    {"conversation.read", H_CONVERSATION},
    {"conversation.priority.updated", H_CONVERSATION},
    {"conversation.rating.added", H_CONVERSATION},
    {"conversation_part.tag.created", H_CONVERSATION},
    {"conversation.deleted", H_CONV_DELETED},
    {"conversation.contact.attached", H_CONV_CONTACT},
    {"conversation.contact.detached", H_CONV_CONTACT},
    {"ticket.created", H_TICKET},
    {"ticket.state.updated", H_TICKET},
    {"ticket.closed", H_TICKET},
    {"ticket.resolved", H_TICKET},
    {"ticket.contact.attached", H_TICKET_CONTACT},
    {"ticket.contact.detached", H_TICKET_CONTACT},
    {"contact.user.tag.created", H_CONTACT_TAG},
    {"contact.user.tag.deleted", H_CONTACT_TAG},
    {"contact.lead.tag.created", H_CONTACT_TAG},
    {"contact.lead.tag.deleted", H_CONTACT_TAG},
    {"user.tag.created", H_USER_TAG},
    {"user.tag.deleted", H_USER_TAG},
    {"contact.user.created", H_CONTACT},
    {"contact.user.updated", H_CONTACT},
    {"contact.merged", H_MERGED},
};

/* Parse state: the doc plus where to write a reason. */
struct ctx {
    struct api_intercom_doc *doc;
    const struct api_intercom_opts *opts;
    char *err;
    size_t errlen;
};

static int fail(struct ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/*---------------------------------------------------------------------------
 * Field readers: absent and null are "not given"; a wrong type is an error.
 *--------------------------------------------------------------------------*/

/* Copies a short string into the doc's arena. Returns it, or NULL when full. */
static const char *arena_put(struct ctx *c, const char *s, size_t n) {
    struct api_intercom_doc *d = c->doc;
    if (d->arena_used + n + 1 > sizeof(d->arena))
        return NULL;
    char *out = d->arena + d->arena_used;
    memcpy(out, s, n);
    out[n] = '\0';
    d->arena_used += n + 1;
    return out;
}

/* Reads an identifier that Intercom sends as a string or, in some shapes, an integer.
 * *out is NULL when absent, null or "". Returns 0 or -1. */
static int read_id(struct ctx *c, const json_t *obj, const char *key, const char *path,
                   const char **out) {
    const json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (json_is_string(v)) {
        if (json_string_length(v) > API_INTERCOM_ID_MAX)
            return fail(c, "%s.%s is longer than %d bytes", path, key, API_INTERCOM_ID_MAX);
        if (json_string_length(v) > 0)
            *out = json_string_value(v);
        return 0;
    }
    if (json_is_integer(v)) {
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
        *out = arena_put(c, buf, (size_t)n);
        return *out ? 0 : fail(c, "too many identifiers in one notification");
    }
    return fail(c, "%s.%s must be a string", path, key);
}

static int read_str(struct ctx *c, const json_t *obj, const char *key, const char *path,
                    const char **out) {
    const json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return fail(c, "%s.%s must be a string", path, key);
    *out = json_string_value(v);
    return 0;
}

/* An optional object member: NULL when absent or null; error when another type. */
static int read_obj(struct ctx *c, const json_t *obj, const char *key, const char *path,
                    const json_t **out) {
    const json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return fail(c, "%s.%s must be an object", path, key);
    *out = v;
    return 0;
}

static int read_array(struct ctx *c, const json_t *obj, const char *key, const char *path,
                      const json_t **out) {
    const json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return fail(c, "%s.%s must be an array", path, key);
    *out = v;
    return 0;
}

static int is_leap(int y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian); no timegm, no TZ dependence. */
static int64_t days_from_civil(int y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int api_intercom_parse_iso8601(const char *s, int64_t *out) {
    int y, mo, d, h, mi, sec, n = 0;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return -1;
    s += 10;
    if (*s != 'T' && *s != 't' && *s != ' ')
        return -1;
    s++;
    if (sscanf(s, "%2d:%2d:%2d%n", &h, &mi, &sec, &n) != 3 || n != 8)
        return -1;
    s += 8;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && is_leap(y)) || h > 23 ||
        mi > 59 || sec > 60)
        return -1;
    if (*s == '.') {
        s++;
        if (!isdigit((unsigned char)*s))
            return -1;
        while (isdigit((unsigned char)*s))
            s++;
    }
    int64_t offset = 0;
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        int oh, om;
        int sign = *s == '-' ? -1 : 1;
        s++;
        if (sscanf(s, "%2d:%2d%n", &oh, &om, &n) == 2 && n == 5)
            s += 5;
        else if (sscanf(s, "%2d%2d%n", &oh, &om, &n) == 2 && n == 4)
            s += 4;
        else
            return -1;
        if (oh > 23 || om > 59)
            return -1;
        offset = sign * (oh * 3600 + om * 60);
    } else {
        return -1; /* no zone: refuse to guess */
    }
    if (*s != '\0')
        return -1;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
    return 0;
}

/* Reads a timestamp: unix seconds (integer, or a real such as 1768031789.5), or an
 * ISO-8601 string. 0 when absent or null. */
static int read_time(struct ctx *c, const json_t *obj, const char *key, const char *path,
                     int64_t *out) {
    const json_t *v = json_object_get(obj, key);
    *out = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        /* Milliseconds slip in from some tools; Intercom's are seconds. */
        if (*out > 100000000000LL)
            *out /= 1000;
        return *out >= 0 ? 0 : fail(c, "%s.%s must not be negative", path, key);
    }
    if (json_is_real(v) && json_real_value(v) >= 0 && json_real_value(v) < 1e12) {
        *out = (int64_t)json_real_value(v);
        return 0;
    }
    if (json_is_string(v) && api_intercom_parse_iso8601(json_string_value(v), out) == 0)
        return 0;
    return fail(c, "%s.%s must be a unix timestamp or an ISO-8601 date-time", path, key);
}

/*---------------------------------------------------------------------------
 * Pieces of items
 *--------------------------------------------------------------------------*/

static int add_contact(struct ctx *c, const char *contact_id, const char *external_id) {
    struct state_change *chg = &c->doc->chg;
    if (contact_id == NULL && external_id == NULL)
        return 0;
    for (size_t i = 0; i < chg->ncontacts; i++) {
        const struct state_contact *ct = &chg->contacts[i];
        if (contact_id && ct->contact_id && strcmp(contact_id, ct->contact_id) == 0)
            return 0;
    }
    if (chg->ncontacts == STATE_MAX_CONTACTS)
        return 0; /* group conversations beyond 16 people: the rest are not tracked */
    chg->contacts[chg->ncontacts].contact_id = contact_id;
    chg->contacts[chg->ncontacts].external_id = external_id;
    chg->ncontacts++;
    return 0;
}

/* A 2.x contact object or reference: {id, external_id, role}. */
static int read_contact(struct ctx *c, const json_t *o, const char *path) {
    const char *id, *ext, *role;
    if (!json_is_object(o))
        return fail(c, "%s must be an object", path);
    if (read_id(c, o, "id", path, &id) < 0 || read_id(c, o, "external_id", path, &ext) < 0 ||
        read_str(c, o, "role", path, &role) < 0)
        return -1;
    if (role != NULL)
        c->doc->chg.role = role;
    return add_contact(c, id, ext);
}

/* Copies the configured profile attributes of a full contact object (top-level fields,
 * then custom_attributes) into doc->profile; for contact.user.created also the
 * intercom_user_synced properties (plan, mrr, signup_date when present). */
static void read_profile(struct ctx *c, const json_t *contact) {
    struct api_intercom_doc *d = c->doc;
    const json_t *custom = json_object_get(contact, "custom_attributes");
    if (!json_is_object(custom))
        custom = NULL;
    for (size_t i = 0; i < c->opts->nprofile_attrs; i++) {
        const char *name = c->opts->profile_attrs[i];
        const json_t *v = json_object_get(contact, name);
        if ((v == NULL || json_is_null(v)) && custom != NULL)
            v = json_object_get(custom, name);
        if (v == NULL || json_is_null(v) || json_is_object(v) || json_is_array(v))
            continue;
        if (d->profile == NULL)
            d->profile = json_object();
        json_object_set(d->profile, name, (json_t *)(uintptr_t)v);
    }
    d->chg.profile = d->profile;
    if (!d->chg.contact_created)
        return;
    static const char *const props[] = {"plan", "mrr"};
    d->synced = json_object();
    for (size_t i = 0; i < 2; i++) {
        const json_t *v = json_object_get(contact, props[i]);
        if ((v == NULL || json_is_null(v)) && custom != NULL)
            v = json_object_get(custom, props[i]);
        if (v != NULL && (json_is_string(v) || json_is_number(v)))
            json_object_set(d->synced, props[i], (json_t *)(uintptr_t)v);
    }
    int64_t signup = 0;
    const json_t *su = json_object_get(contact, "signed_up_at");
    if (json_is_integer(su))
        signup = json_integer_value(su);
    else if (json_is_string(su))
        api_intercom_parse_iso8601(json_string_value(su), &signup);
    if (signup > 0)
        json_object_set_new(d->synced, "signup_date", json_integer(signup));
    d->chg.synced = d->synced;
}

/* A 1.x user object: {type, id, user_id}. user_id is the product's user id. */
static int read_user_v1(struct ctx *c, const json_t *o, const char *path) {
    const char *id, *user_id;
    if (read_id(c, o, "id", path, &id) < 0 || read_id(c, o, "user_id", path, &user_id) < 0)
        return -1;
    return add_contact(c, id, user_id);
}

/* Contacts of a conversation or ticket, in whichever shape it comes. */
static int read_item_contacts(struct ctx *c, const json_t *item, const char *path) {
    const json_t *list, *arr, *user;
    if (read_obj(c, item, "contacts", path, &list) < 0)
        return -1;
    if (list != NULL) {
        if (read_array(c, list, "contacts", "data.item.contacts", &arr) < 0)
            return -1;
        size_t i;
        json_t *ct;
        json_array_foreach(arr, i, ct) {
            if (read_contact(c, ct, "data.item.contacts.contacts[]") < 0)
                return -1;
        }
    }
    if (read_obj(c, item, "user", path, &user) < 0)
        return -1;
    if (user != NULL && read_user_v1(c, user, "data.item.user") < 0)
        return -1;
    return 0;
}

static int add_tag(struct ctx *c, const char *name, int64_t at) {
    struct state_change *chg = &c->doc->chg;
    for (size_t i = 0; i < chg->ntags; i++) {
        if (strcasecmp(chg->tags[i].name, name) == 0)
            return 0;
    }
    if (chg->ntags == STATE_MAX_TAGS)
        return 0;
    struct state_tag *t = &chg->tags[chg->ntags++];
    t->name = name;
    t->at = at > 0 ? at : chg->event_at;
    t->churn = 0;
    for (size_t i = 0; i < c->opts->nchurn_tags; i++) {
        if (strcasecmp(c->opts->churn_tags[i], name) == 0)
            t->churn = 1;
    }
    return 0;
}

/* A tag list {type: tag.list, tags: [{name, applied_at?}]}; `at` is the fallback time. */
static int read_tag_list(struct ctx *c, const json_t *arr, const char *path, int64_t at) {
    size_t i;
    json_t *tag;
    json_array_foreach(arr, i, tag) {
        const char *name;
        int64_t applied;
        if (!json_is_object(tag))
            return fail(c, "%s[] must be objects", path);
        if (read_str(c, tag, "name", path, &name) < 0 ||
            read_time(c, tag, "applied_at", path, &applied) < 0)
            return -1;
        if (name != NULL && *name != '\0' && add_tag(c, name, applied ? applied : at) < 0)
            return -1;
    }
    return 0;
}

/* The tags a conversation_part.tag.created notification applied: 1.x `tags_added`, else
 * the tags on the notified parts (2.x), else the conversation's tag list. */
static int read_applied_tags(struct ctx *c, const json_t *item) {
    const json_t *added, *arr, *parts, *plist, *tags;
    if (read_obj(c, item, "tags_added", "data.item", &added) < 0)
        return -1;
    if (added != NULL) {
        if (read_array(c, added, "tags", "data.item.tags_added", &arr) < 0)
            return -1;
        if (arr != NULL && json_array_size(arr) > 0)
            return read_tag_list(c, arr, "data.item.tags_added.tags", 0);
    }
    if (read_obj(c, item, "conversation_parts", "data.item", &parts) < 0)
        return -1;
    if (parts != NULL) {
        if (read_array(c, parts, "conversation_parts", "data.item.conversation_parts",
                       &plist) < 0)
            return -1;
        size_t i;
        json_t *part;
        json_array_foreach(plist, i, part) {
            const json_t *ptags;
            int64_t at;
            if (!json_is_object(part))
                return fail(c, "data.item.conversation_parts.conversation_parts[] must be objects");
            if (read_array(c, part, "tags", "data.item.conversation_parts[]", &ptags) < 0 ||
                read_time(c, part, "created_at", "data.item.conversation_parts[]", &at) < 0)
                return -1;
            if (ptags != NULL &&
                read_tag_list(c, ptags, "data.item.conversation_parts[].tags", at) < 0)
                return -1;
        }
        if (c->doc->chg.ntags > 0)
            return 0;
    }
    if (read_obj(c, item, "tags", "data.item", &tags) < 0)
        return -1;
    if (tags != NULL) {
        if (read_array(c, tags, "tags", "data.item.tags", &arr) < 0)
            return -1;
        if (arr != NULL)
            return read_tag_list(c, arr, "data.item.tags.tags", 0);
    }
    return 0;
}

/* Maps Intercom's ticket state categories: everything but "resolved" is open. */
static enum state_ticket_state ticket_category(const char *category) {
    if (category == NULL || *category == '\0')
        return STATE_TICKET_UNKNOWN;
    if (strcmp(category, "resolved") == 0 || strcmp(category, "closed") == 0)
        return STATE_TICKET_CLOSED;
    return STATE_TICKET_OPEN;
}

static enum state_ticket_state conversation_state(const char *state) {
    if (state == NULL)
        return STATE_TICKET_UNKNOWN;
    if (strcmp(state, "open") == 0)
        return STATE_TICKET_OPEN;
    if (strcmp(state, "snoozed") == 0)
        return STATE_TICKET_SNOOZED;
    if (strcmp(state, "closed") == 0)
        return STATE_TICKET_CLOSED;
    return STATE_TICKET_UNKNOWN;
}

/* The open/closed state of a conversation or ticket item. */
static int read_item_state(struct ctx *c, const json_t *item, int is_ticket) {
    struct state_change *chg = &c->doc->chg;
    const json_t *ts = json_object_get(item, "ticket_state");
    const char *state;

    const json_t *open = json_object_get(item, "open");

    /* Type-check every state field even when an earlier one decides, so a malformed
     * delivery is refused whichever field happens to be consulted first. */
    if (open != NULL && !json_is_null(open) && !json_is_boolean(open))
        return fail(c, "data.item.open must be a boolean");
    chg->ticket_state = STATE_TICKET_UNKNOWN;
    if (is_ticket && ts != NULL && !json_is_null(ts)) {
        if (json_is_string(ts)) {
            chg->ticket_state = ticket_category(json_string_value(ts));
        } else if (json_is_object(ts)) {
            const char *cat;
            if (read_str(c, ts, "category", "data.item.ticket_state", &cat) < 0)
                return -1;
            chg->ticket_state = ticket_category(cat);
        } else {
            return fail(c, "data.item.ticket_state must be a string or an object");
        }
    }
    if (chg->ticket_state == STATE_TICKET_UNKNOWN) {
        if (read_str(c, item, "state", "data.item", &state) < 0)
            return -1;
        chg->ticket_state = is_ticket ? ticket_category(state) : conversation_state(state);
        if (!is_ticket && state != NULL && chg->ticket_state == STATE_TICKET_UNKNOWN)
            chg->ticket_state = ticket_category(state); /* a ticket seen through a conversation topic */
    }
    if (chg->ticket_state == STATE_TICKET_UNKNOWN) {
        if (open != NULL && !json_is_null(open)) {
            chg->ticket_state = json_is_true(open) ? STATE_TICKET_OPEN : STATE_TICKET_CLOSED;
        }
    }
    return 0;
}

/*---------------------------------------------------------------------------
 * Handlers
 *--------------------------------------------------------------------------*/

static int parse_conversation(struct ctx *c, const json_t *item, int topic_is_ticket) {
    struct state_change *chg = &c->doc->chg;
    const char *type, *priority;
    const json_t *rating;

    /* 2.15+ ticket.closed nests the ticket: {type: ..., ticket: {...}}. */
    const json_t *nested = json_object_get(item, "ticket");
    if (topic_is_ticket && json_is_object(nested) &&
        !json_is_string(json_object_get(item, "ticket_state")) &&
        !json_is_object(json_object_get(item, "ticket_state")) &&
        json_object_get(nested, "id") != NULL)
        item = nested;

    if (read_str(c, item, "type", "data.item", &type) < 0)
        return -1;
    int is_ticket = (type != NULL && strcmp(type, "ticket") == 0) ||
                    (type == NULL && topic_is_ticket);
    chg->kind = STATE_CHANGE_TICKET;
    chg->ticket_kind = is_ticket ? STATE_KIND_TICKET : STATE_KIND_CONVERSATION;
    if (read_id(c, item, "id", "data.item", &chg->ticket_id) < 0)
        return -1;
    if (chg->ticket_id == NULL)
        return fail(c, "data.item.id is missing: not a %s notification",
                    is_ticket ? "ticket" : "conversation");
    if (read_time(c, item, "created_at", "data.item", &chg->opened_at) < 0 ||
        read_time(c, item, "updated_at", "data.item", &chg->updated_at) < 0 ||
        read_item_state(c, item, is_ticket) < 0 || read_item_contacts(c, item, "data.item") < 0)
        return -1;
    if (chg->updated_at == 0)
        chg->updated_at = chg->event_at;

    if (read_str(c, item, "priority", "data.item", &priority) < 0)
        return -1;
    chg->priority = priority == NULL ? -1 : strcmp(priority, "priority") == 0 ? 1 : 0;

    if (is_ticket) {
        const char *cat;
        if (read_str(c, item, "category", "data.item", &cat) < 0)
            return -1;
        chg->category = cat;
    }

    if (read_obj(c, item, "conversation_rating", "data.item", &rating) < 0)
        return -1;
    if (rating != NULL) {
        const json_t *score = json_object_get(rating, "rating");
        if (score != NULL && !json_is_null(score)) {
            if (!json_is_integer(score) || json_integer_value(score) < 1 ||
                json_integer_value(score) > 5)
                return fail(c, "data.item.conversation_rating.rating must be an integer 1-5");
            chg->rating = (int)json_integer_value(score);
            if (read_time(c, rating, "created_at", "data.item.conversation_rating",
                          &chg->rating_at) < 0)
                return -1;
            if (chg->rating_at == 0)
                chg->rating_at = chg->updated_at;
            /* The rating names its contact; make sure that contact is counted. */
            const json_t *rc = json_object_get(rating, "contact");
            if (json_is_object(rc) && read_contact(c, rc, "data.item.conversation_rating.contact") < 0)
                return -1;
        }
    }
    if (strcmp(chg->topic, "conversation_part.tag.created") == 0 && read_applied_tags(c, item) < 0)
        return -1;
    return 0;
}

static int parse_conv_deleted(struct ctx *c, const json_t *item) {
    struct state_change *chg = &c->doc->chg;
    chg->kind = STATE_CHANGE_TICKET_DELETED;
    if (read_id(c, item, "conversation_id", "data.item", &chg->ticket_id) < 0)
        return -1;
    if (chg->ticket_id == NULL && read_id(c, item, "id", "data.item", &chg->ticket_id) < 0)
        return -1;
    if (chg->ticket_id == NULL)
        return fail(c, "data.item.conversation_id is missing");
    return 0;
}

/* The state a contact-attach part recorded: its `data` member is a JSON string holding
 * "state":"state_open" and the like. */
static enum state_ticket_state attach_state(const json_t *parts) {
    size_t i;
    json_t *part;
    enum state_ticket_state st = STATE_TICKET_UNKNOWN;
    json_array_foreach(parts, i, part) {
        const json_t *data = json_object_get(part, "data");
        if (!json_is_string(data))
            continue;
        json_t *inner = json_loads(json_string_value(data), 0, NULL);
        const char *s = inner ? json_string_value(json_object_get(inner, "state")) : NULL;
        if (s != NULL && strncmp(s, "state_", 6) == 0) {
            enum state_ticket_state x = conversation_state(s + 6);
            if (x != STATE_TICKET_UNKNOWN)
                st = x;
        }
        json_decref(inner);
    }
    return st;
}

static int parse_conv_contact(struct ctx *c, const json_t *item, int is_ticket) {
    struct state_change *chg = &c->doc->chg;
    const json_t *holder, *model = NULL, *contact;
    const char *path = is_ticket ? "data.item.ticket" : "data.item.conversation";

    chg->kind = STATE_CHANGE_TICKET;
    chg->ticket_kind = is_ticket ? STATE_KIND_TICKET : STATE_KIND_CONVERSATION;
    chg->detached = strstr(chg->topic, ".detached") != NULL;
    if (read_obj(c, item, is_ticket ? "ticket" : "conversation", "data.item", &holder) < 0 ||
        read_obj(c, item, "contact", "data.item", &contact) < 0)
        return -1;
    if (holder == NULL)
        return fail(c, "%s is missing", path);
    if (contact == NULL)
        return fail(c, "data.item.contact is missing");
    if (is_ticket) {
        model = holder;
        const char *state;
        if (read_str(c, model, "state", path, &state) < 0)
            return -1;
        chg->ticket_state = ticket_category(state);
    } else {
        const json_t *parts;
        if (read_obj(c, holder, "model", path, &model) < 0 ||
            read_array(c, holder, "parts", path, &parts) < 0)
            return -1;
        if (model == NULL)
            model = holder;
        /* A contact is attached to a live conversation; the part records its state. */
        chg->ticket_state = parts ? attach_state(parts) : STATE_TICKET_UNKNOWN;
        if (chg->ticket_state == STATE_TICKET_UNKNOWN)
            chg->ticket_state = STATE_TICKET_OPEN;
    }
    if (read_id(c, model, "id", path, &chg->ticket_id) < 0 ||
        read_time(c, model, "created_at", path, &chg->opened_at) < 0 ||
        read_time(c, model, "updated_at", path, &chg->updated_at) < 0)
        return -1;
    if (chg->ticket_id == NULL)
        return fail(c, "%s id is missing", path);
    if (chg->updated_at == 0)
        chg->updated_at = chg->event_at;
    chg->priority = -1;
    return read_contact(c, contact, "data.item.contact");
}

static int parse_contact_tag(struct ctx *c, const json_t *item, int v1) {
    struct state_change *chg = &c->doc->chg;
    const json_t *tag, *who;
    const char *name;
    int64_t at;

    chg->kind = STATE_CHANGE_CONTACT_TAG;
    chg->untag = strstr(chg->topic, ".deleted") != NULL;
    if (read_obj(c, item, "tag", "data.item", &tag) < 0 ||
        read_obj(c, item, v1 ? "user" : "contact", "data.item", &who) < 0 ||
        read_time(c, item, "created_at", "data.item", &at) < 0)
        return -1;
    if (tag == NULL)
        return fail(c, "data.item.tag is missing");
    if (who == NULL)
        return fail(c, "data.item.%s is missing", v1 ? "user" : "contact");
    if (read_str(c, tag, "name", "data.item.tag", &name) < 0)
        return -1;
    if (name == NULL)
        return fail(c, "data.item.tag.name is missing");
    if (add_tag(c, name, at) < 0)
        return -1;
    if (v1)
        return read_user_v1(c, who, "data.item.user");
    if (read_contact(c, who, "data.item.contact") < 0)
        return -1;
    read_profile(c, who);
    return 0;
}

static int parse_contact(struct ctx *c, const json_t *item) {
    struct state_change *chg = &c->doc->chg;
    chg->kind = STATE_CHANGE_CONTACT;
    chg->contact_created = strcmp(chg->topic, "contact.user.created") == 0;
    if (read_contact(c, item, "data.item") < 0)
        return -1;
    read_profile(c, item);
    return 0;
}

/* contact.merged: the item is the contact that survives. Real deliveries do not name the
 * merged-away contact; when a payload does (`from`/`merged_from`, an id or an object),
 * its state moves to the survivor. Otherwise the survivor's link is refreshed and the
 * conversations Intercom moved arrive re-attributed on their next notification. */
static int parse_merged(struct ctx *c, const json_t *item) {
    struct state_change *chg = &c->doc->chg;
    static const char *const keys[] = {"from", "merged_from", "merged_contact"};
    if (parse_contact(c, item) < 0)
        return -1;
    chg->kind = STATE_CHANGE_CONTACT_MERGED;
    chg->contact_created = 0;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const json_t *v = json_object_get(item, keys[i]);
        if (v == NULL || json_is_null(v))
            continue;
        if (json_is_object(v)) {
            if (read_id(c, v, "id", "data.item.from", &chg->merge_from.contact_id) < 0 ||
                read_id(c, v, "external_id", "data.item.from", &chg->merge_from.external_id) < 0)
                return -1;
        } else if (read_id(c, item, keys[i], "data.item", &chg->merge_from.contact_id) < 0) {
            return -1;
        }
        break;
    }
    if (chg->merge_from.contact_id == NULL && chg->merge_from.external_id == NULL)
        chg->kind = STATE_CHANGE_CONTACT;
    return 0;
}

/*---------------------------------------------------------------------------
 * Entry point
 *--------------------------------------------------------------------------*/

static void compute_dedupe(struct state_change *chg, const char *id, const char *body,
                           size_t len) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    if (sha == NULL)
        abort();
    /* The notification id when Intercom gives one (stable across retries); otherwise the
     * body itself, which a retry repeats byte for byte. */
    EVP_DigestInit_ex(sha, EVP_sha1(), NULL);
    if (id != NULL) {
        EVP_DigestUpdate(sha, "id:", 3);
        EVP_DigestUpdate(sha, id, strlen(id));
    } else {
        EVP_DigestUpdate(sha, "body:", 5);
        EVP_DigestUpdate(sha, body, len);
    }
    EVP_DigestFinal_ex(sha, md, &mdlen);
    EVP_MD_CTX_free(sha);
    for (int i = 0; i < 8; i++)
        snprintf(chg->dedupe + 2 * i, 3, "%02x", md[i]);
}

int api_intercom_skim = 1;

/* The body's tree without the members of data.item this file never reads (api_jskim.h),
 * or NULL when the skim declines or jansson rejects the copy: the caller then parses the
 * body itself, so every error it reports is about the text the client sent. */
static json_t *skim_and_load(const char *body, size_t len, const struct api_intercom_opts *opts) {
    char stack[8192];
    if (!api_intercom_skim)
        return NULL;
    char *buf = len <= sizeof(stack) ? stack : malloc(len);
    if (buf == NULL)
        return NULL;
    long n = api_jskim(body, len, buf, opts->profile_attrs, opts->nprofile_attrs);
    json_t *root = n >= 0 ? json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (buf != stack)
        free(buf);
    return root;
}

static int parse_doc(struct api_intercom_doc *doc, const char *body, size_t len,
                     const struct api_intercom_opts *opts, char *err, size_t errlen) {
    struct ctx c = {doc, opts, err, errlen};
    json_error_t jerr;
    const char *type, *id;
    const json_t *data, *item;

    doc->root = skim_and_load(body, len, opts);
    if (doc->root == NULL)
        doc->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc->root == NULL)
        return fail(&c, "body is not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                    jerr.column);
    if (!json_is_object(doc->root))
        return fail(&c, "not an Intercom notification: the body must be a JSON object");
    if (read_str(&c, doc->root, "type", "notification", &type) < 0)
        return -1;
    if (type == NULL || strcmp(type, "notification_event") != 0)
        return fail(&c, "not an Intercom notification: \"type\" must be \"notification_event\"");
    if (read_str(&c, doc->root, "topic", "notification", &doc->chg.topic) < 0)
        return -1;
    if (doc->chg.topic == NULL || *doc->chg.topic == '\0')
        return fail(&c, "not an Intercom notification: \"topic\" is missing");
    if (read_str(&c, doc->root, "id", "notification", &id) < 0 ||
        read_time(&c, doc->root, "created_at", "notification", &doc->chg.event_at) < 0 ||
        read_obj(&c, doc->root, "data", "notification", &data) < 0)
        return -1;
    if (data == NULL)
        return fail(&c, "not an Intercom notification: \"data\" is missing");
    if (read_obj(&c, data, "item", "data", &item) < 0)
        return -1;
    if (item == NULL)
        return fail(&c, "not an Intercom notification: \"data.item\" is missing");
    if (doc->chg.event_at == 0)
        doc->chg.event_at = (int64_t)time(NULL);
    compute_dedupe(&doc->chg, id, body, len);

    enum handler h = H_IGNORE;
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        if (strcmp(topics[i].topic, doc->chg.topic) == 0) {
            h = topics[i].h;
            break;
        }
    }
    doc->known_topic = h != H_IGNORE;
    doc->chg.priority = -1;
    switch (h) {
    case H_IGNORE:
    case H_PING:
        doc->chg.kind = STATE_CHANGE_NONE;
        return 0;
    case H_CONVERSATION:
        return parse_conversation(&c, item, 0);
    case H_TICKET:
        return parse_conversation(&c, item, 1);
    case H_CONV_DELETED:
        return parse_conv_deleted(&c, item);
    case H_CONV_CONTACT:
        return parse_conv_contact(&c, item, 0);
    case H_TICKET_CONTACT:
        return parse_conv_contact(&c, item, 1);
    case H_CONTACT_TAG:
        return parse_contact_tag(&c, item, 0);
    case H_USER_TAG:
        return parse_contact_tag(&c, item, 1);
    case H_CONTACT:
        return parse_contact(&c, item);
    case H_MERGED:
        return parse_merged(&c, item);
    }
    return 0;
}

/* Room for a payload's tree in one chunk: jansson takes 7.5 to 10 bytes per byte of
 * compact JSON for Intercom's shapes (measured on tests/fixtures/intercom and the
 * bench's deliveries); a larger tree simply gets a second chunk. */
#define JARENA_RATIO 10
#define JARENA_MIN 4096

int api_intercom_parse(struct api_intercom_doc *doc, const char *body, size_t len,
                       const struct api_intercom_opts *opts, char *err, size_t errlen) {
    memset(doc, 0, sizeof(*doc));
    if (!api_jarena_installed())
        return parse_doc(doc, body, len, opts, err, errlen);
    /* Every jansson allocation of the parse (the tree, profile, synced, and the scratch
     * of attach_state) comes from the doc's arena; nothing else runs on this thread
     * meanwhile. Out of memory for the arena: plain malloc, as without hooks. */
    size_t hint = len < (SIZE_MAX / JARENA_RATIO) ? len * JARENA_RATIO : SIZE_MAX;
    doc->heap = api_jarena_new(hint < JARENA_MIN ? JARENA_MIN : hint);
    struct api_jarena *prev = api_jarena_enter(doc->heap);
    int rc = parse_doc(doc, body, len, opts, err, errlen);
    api_jarena_enter(prev);
    return rc;
}

void api_intercom_free(struct api_intercom_doc *doc) {
    if (doc->heap != NULL) {
        /* Every node of root, profile and synced is in the arena (see api_intercom.h). */
        api_jarena_free(doc->heap);
        doc->heap = NULL;
        doc->root = doc->profile = doc->synced = NULL;
        return;
    }
    json_decref(doc->root);
    json_decref(doc->profile);
    json_decref(doc->synced);
    doc->root = doc->profile = doc->synced = NULL;
}

int api_intercom_parse_object(struct api_intercom_doc *doc, const json_t *obj, const char *source,
                              const struct api_intercom_opts *opts, char *err, size_t errlen) {
    memset(doc, 0, sizeof(*doc));
    const char *type = json_string_value(json_object_get(obj, "type"));
    const json_t *id = json_object_get(obj, "id");
    if (!json_is_object(obj) || type == NULL || (!json_is_string(id) && !json_is_integer(id))) {
        snprintf(err, errlen, "not an Intercom conversation or ticket object");
        return -1;
    }
    int is_ticket = strcmp(type, "ticket") == 0;
    if (!is_ticket && strcmp(type, "conversation") != 0) {
        snprintf(err, errlen, "unexpected object type \"%s\"", type);
        return -1;
    }
    /* The notification id names the object's version, so reading the same version twice
     * (a resumed backfill, a repeated re-check) is a duplicate. */
    const json_t *updated = json_object_get(obj, "updated_at");
    char *id_text = json_is_string(id) ? strdup(json_string_value(id))
                                       : json_dumps(id, JSON_ENCODE_ANY);
    char *upd_text = json_dumps(updated ? updated : json_null(), JSON_ENCODE_ANY);
    json_t *env = json_object();
    json_object_set_new(env, "type", json_string("notification_event"));
    json_object_set_new(env, "id", json_sprintf("notif_%s_%s_%s_%s", source, type,
                                                id_text ? id_text : "", upd_text ? upd_text : ""));
    /* Neutral topics: the state comes from the object itself, never from the topic. */
    json_object_set_new(env, "topic",
                        json_string(is_ticket ? "ticket.state.updated" : "conversation.admin.noted"));
    json_object_set_new(env, "app_id", json_string("suppressd"));
    const json_t *at = updated ? updated : json_object_get(obj, "created_at");
    json_object_set_new(env, "created_at", at ? json_deep_copy(at) : json_integer(0));
    json_t *data = json_object();
    json_object_set_new(data, "type", json_string("notification_event_data"));
    json_object_set_new(data, "item", json_deep_copy(obj));
    json_object_set_new(env, "data", data);
    free(id_text);
    free(upd_text);
    char *text = json_dumps(env, JSON_COMPACT);
    json_decref(env);
    if (text == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = api_intercom_parse(doc, text, strlen(text), opts, err, errlen);
    free(text);
    return rc;
}
