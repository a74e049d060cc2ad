/* state_user: reading users back for the query API.
 *
 * One HGETALL for a full user, one HMGET of the six rule facts per user for suppression
 * checks; a batch of users is one pipelined round (all commands written before any
 * reply is read). Parsing is split from I/O so it can be unit-tested. */
#ifndef STATE_USER_H
#define STATE_USER_H

#include <stddef.h>
#include <stdint.h>

#include "state/state_change.h"
#include "state/state_rules.h"
#include "state/state_store.h"

struct state_user_ticket {
    char *id;
    enum state_ticket_kind kind;
    enum state_ticket_state state;   /* open or snoozed: only open tickets are listed */
    int priority;
    int64_t opened_at;
    int64_t updated_at;
};

struct state_user {
    struct state_facts facts;
    char *csat_ticket;               /* NULL when no rating */
    int64_t updated_at;              /* 0 for a user never seen */
    size_t ntickets;
    struct state_user_ticket *tickets; /* open tickets, oldest first */
};

/* Fills `u` from a user hash given as parallel field/value arrays. Unknown fields are
 * ignored and malformed values read as absent. Returns 0, or -1 when out of memory.
 * Release with state_user_clear. */
int state_user_from_fields(struct state_user *u, size_t n, const char *const *fields,
                           const size_t *flens, const char *const *vals, const size_t *vlens);

/* Releases what state_user_from_fields allocated; `u` is zeroed. */
void state_user_clear(struct state_user *u);

/* Called with the user (borrowed, valid during the call) or NULL when Redis failed. */
typedef void state_user_fn(const struct state_user *u, void *arg);

/* Reads one user. Returns 0 (fn runs once) or -1 when the store is not ready. */
int state_user_get(struct state_store *st, const char *uid, state_user_fn *fn, void *arg);

/* Called once with facts[i] for uids[i], or facts == NULL when Redis failed. */
typedef void state_facts_fn(const struct state_facts *facts, size_t n, void *arg);

/* Reads the rule facts of n users in one pipelined round. Returns 0 (fn runs once) or -1
 * when the store is not ready. */
int state_facts_get_many(struct state_store *st, const char *const *uids, size_t n,
                         state_facts_fn *fn, void *arg);

#endif
