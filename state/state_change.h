/* state_change: one Intercom notification, normalized.
 *
 * api/ turns a payload (either API shape) into this plain struct; state/ applies it to
 * Redis. Nothing here knows HTTP or JSON field names, and nothing in api/ knows keys.
 * Strings are borrowed from the parsed JSON document the parser keeps alive
 * (api_intercom_parse/api_intercom_free). */
#ifndef STATE_CHANGE_H
#define STATE_CHANGE_H

#include <stddef.h>
#include <stdint.h>

#define STATE_MAX_CONTACTS 16
#define STATE_MAX_TAGS 16

enum state_change_kind {
    STATE_CHANGE_NONE = 0,        /* ping, unused topic: acknowledged, nothing stored */
    STATE_CHANGE_TICKET,          /* a conversation or ticket as it is now */
    STATE_CHANGE_TICKET_DELETED,  /* only the id is known */
    STATE_CHANGE_CONTACT_TAG,     /* a tag added to or removed from a contact */
    STATE_CHANGE_CONTACT,         /* a contact seen: links contact id and external id */
    STATE_CHANGE_CONTACT_MERGED,  /* merge_from's state moves to contacts[0] */
};

enum state_ticket_kind {
    STATE_KIND_CONVERSATION = 0,
    STATE_KIND_TICKET = 1,
};

enum state_ticket_state {
    STATE_TICKET_UNKNOWN = 0,     /* the payload does not say: keep what is stored */
    STATE_TICKET_OPEN,
    STATE_TICKET_SNOOZED,         /* counts as open */
    STATE_TICKET_CLOSED,          /* closed or resolved */
};

struct state_contact {
    const char *contact_id;       /* Intercom contact id; NULL if the payload has none */
    const char *external_id;      /* the product's user id; NULL when absent */
};

struct state_tag {
    const char *name;
    int churn;                    /* one of SUPPRESS_CHURN_TAGS (set by the caller) */
    int64_t at;                   /* when it was applied (unix seconds) */
};

struct state_change {
    enum state_change_kind kind;
    const char *topic;
    char dedupe[17];              /* 16 hex chars identifying the notification */
    int64_t event_at;             /* envelope created_at: tie-breaker and fallback time */

    size_t ncontacts;
    struct state_contact contacts[STATE_MAX_CONTACTS];
    int detached;                 /* *.contact.detached: these contacts lose the ticket */

    /* STATE_CHANGE_TICKET / _DELETED */
    const char *ticket_id;
    enum state_ticket_kind ticket_kind;
    enum state_ticket_state ticket_state;
    int priority;                 /* 1 priority, 0 not, -1 not stated */
    int64_t opened_at;            /* ticket created_at */
    int64_t updated_at;           /* ticket updated_at: the version guard */
    const char *category;         /* ticket category ("Customer") or NULL */

    /* Tags applied by this notification (to the ticket, or to the contact). */
    size_t ntags;
    struct state_tag tags[STATE_MAX_TAGS];
    int untag;                    /* STATE_CHANGE_CONTACT_TAG: tags were removed */

    /* A CSAT rating carried by the conversation (0 = none). */
    int rating;
    int64_t rating_at;

    /* STATE_CHANGE_CONTACT_MERGED: the contact merged away (contacts[0] survives). */
    struct state_contact merge_from;

    /* STATE_CHANGE_CONTACT: role "lead"/"user" when known, and the creation topic. */
    const char *role;
    int contact_created;

    /* Intercom profile attributes to copy to Customer.io (SUPPRESS_PROFILE_ATTRIBUTES),
     * and the properties of intercom_user_synced; JSON objects or NULL. */
    const void *profile;          /* json_t *, borrowed */
    const void *synced;           /* json_t *, borrowed */
};

#endif
