/* state_apply: records one normalized Intercom notification in Redis.
 *
 * Steps (each a pipelined round; most notifications need one or two):
 *   1. resolve  contact ids without an external_id through the contact map; owners of a
 *               deleted ticket from the ticket index.
 *   2. link     contact id -> external_id. If the contact's state was kept under
 *               intercom:<contact id>, move it to the user first (copy, then delete).
 *               contact.merged moves the merged-away contact's state the same way.
 *   3. apply    one apply.lua call per user (dedupe, version guard, state, events, sync
 *               queue, all atomic) plus the ticket -> owners index.
 * The caller answers the webhook only after `done` reports STATE_APPLIED or
 * STATE_APPLY_DUPLICATE: from then on the change is in Redis. Every step is idempotent,
 * so a failed attempt (503) redelivered by Intercom converges to the same state. */
#ifndef STATE_APPLY_H
#define STATE_APPLY_H

#include <stdint.h>

#include "state/state_change.h"
#include "state/state_store.h"

enum state_apply_result {
    STATE_APPLIED = 0,          /* at least one user changed or recorded the notification */
    STATE_APPLY_DUPLICATE = 1,  /* every user had already seen this notification */
    STATE_APPLY_FAILED = 2,     /* Redis failed mid-way; the caller answers 503 */
};

struct state_apply_opts {
    int64_t now;          /* unix seconds */
    int64_t keep;         /* seconds to keep a user with no open ticket */
    int64_t link_ttl;     /* seconds a contact -> user link is kept after its last use
                             (the partition sweep, reconcile.lua, drops older ones) */
    int64_t index_ttl;    /* seconds a closed/deleted ticket stays in the ticket index */
    int64_t lookup_ttl;   /* > 0: queue an Intercom look-up of a contact whose external_id
                             is unknown, at most once per this many seconds */
};

typedef void state_apply_done_fn(enum state_apply_result result, void *arg);

/* Starts applying `chg`. `chg` and the strings it points to must stay valid until `done`
 * runs. Returns 0 when started (done runs exactly once, never before this returns), or
 * -1 when the store is not ready (done is not called). */
int state_apply(struct state_store *st, const struct state_change *chg,
                const struct state_apply_opts *o, state_apply_done_fn *done, void *arg);

/* Counters for /metrics: identity moves done, and apply.lua answers by status. */
unsigned long state_apply_moves_total(void);

#endif
