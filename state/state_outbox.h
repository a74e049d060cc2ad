/* state_outbox: the durable queue of work for Customer.io (and later Intercom).
 *
 * Work is recorded by apply.lua in the same atomic step as the state change: the user
 * joins its partition's queue sd:{pN}:q and its events wait in sd:{pN}:e:<user>. A worker
 * leases due users (lease.lua), reads their state and events, sends, and reports back
 * per user (ack.lua): finished events leave the list, the user leaves the queue only if
 * its state did not change meanwhile, and failures are rescheduled with backoff. Nothing
 * is removed before Customer.io answered 2xx (or the item went to the dead-letter
 * stream), so a crash at any point delays work and never loses it.
 *
 * Retries: a user whose send failed with 408/429/5xx or a network error is due again after
 * a backoff (ack.lua) and waits in its partition's retry set sd:{pN}:r meanwhile; when
 * Customer.io answers again after an outage, state_outbox_wake makes all of them due at
 * once, so a long backoff never outlasts the outage by minutes.
 *
 * Dead letters: one stream per destination, sd:{dlq}:<destination>, each entry the item,
 * the reason and Customer.io's answer; an operator lists and replays them. */
#ifndef STATE_OUTBOX_H
#define STATE_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "state/state_store.h"
#include "state/state_user.h"

/* One leased user as read back: its state, its Intercom profile attributes, its
 * pending events (verbatim list entries, oldest first). */
struct state_outbox_user {
    char *uid;
    char *sv;                  /* the sync version read ("" when none) */
    struct state_user user;
    json_t *profile;           /* attribute name -> value (a new reference) */
    size_t nevents;
    char **events;
};

/* Leases due users from `n` partitions starting at `first` (wrapping). fn gets the user
 * ids (borrowed during the call), or uids == NULL when Redis failed. Returns 0 or -1. */
typedef void state_outbox_leased_fn(char **uids, size_t n, void *arg);
int state_outbox_lease(struct state_store *st, unsigned first, unsigned n, int64_t now_ms,
                       int64_t lease_ms, size_t max_per_partition, state_outbox_leased_fn *fn,
                       void *arg);

/* Reads state and up to max_events events of each user, in one pipelined round. fn gets
 * an array of n users (owned by the caller after the call: free each with
 * state_outbox_user_clear and the array with free) or NULL when Redis failed. */
typedef void state_outbox_read_fn(struct state_outbox_user *users, size_t n, void *arg);
int state_outbox_read(struct state_store *st, char *const *uids, size_t n, size_t max_events,
                      state_outbox_read_fn *fn, void *arg);

void state_outbox_user_clear(struct state_outbox_user *u);

/* What to report for one user (see ack.lua for the exact semantics). */
struct state_outbox_ack {
    const char *uid;
    const char *sv;            /* version the identify carried; NULL: identify not done;
                                  "*": done regardless of later changes */
    int retry;                 /* 0: done, 1: retry */
    int lost;                  /* 1: the lease ran out before everything was sent: only
                                  the finished events are reported (retry, sv ignored) */
    int paused;                /* retry without counting an attempt */
    int64_t not_before_ms;     /* Retry-After, 0 for none */
    int64_t give_up_ms;        /* retry: dead-letter after this long since the first failure */
    int64_t window_end_ms;     /* next rule-window end, 0 for none */
    size_t nfinished;
    char *const *finished;     /* events sent or dead-lettered (verbatim) */
};

/* Reports n users in one pipelined round. fn gets, per user, the ack.lua status
 * ("done", "queued", "retry", "exhausted", "lost") or NULL statuses when Redis failed. */
typedef void state_outbox_acked_fn(const char *const *statuses, size_t n, void *arg);
int state_outbox_ack(struct state_store *st, const struct state_outbox_ack *acks, size_t n,
                     int64_t now_ms, state_outbox_acked_fn *fn, void *arg);

/* One dead letter. */
struct state_dead_letter {
    const char *destination;   /* "customerio" */
    const char *uid;
    const char *kind;          /* "identify" or "event" */
    const char *reason;        /* "rejected", "id_too_long", "retries_exhausted", ... */
    long status;               /* HTTP status, 0 when none */
    const char *response;      /* the destination's answer (truncated), or "" */
    const char *payload;       /* what was (or would have been) sent */
    const char *record;        /* the verbatim event entry, to requeue it; "" for identify */
};

/* Appends dead letters (XADD, pipelined). fn(ok) runs once. Returns 0 or -1. */
typedef void state_outbox_done_fn(int ok, void *arg);
int state_outbox_dead_letter(struct state_store *st, const struct state_dead_letter *dl,
                             size_t n, state_outbox_done_fn *fn, void *arg);

/* Claims a slot of a per-second budget (at most `limit` in any 1.1 s, the tenth being
 * headroom for the jitter between the grant and the request's arrival): fn(wait_ms) with
 * 0 = go, > 0 = ask again after that long, < 0 = Redis failed. */
typedef void state_outbox_rate_fn(long wait_ms, void *arg);
int state_outbox_rate(struct state_store *st, const char *destination, int limit,
                      const char *member, state_outbox_rate_fn *fn, void *arg);

/* The same with a window other than one second (Intercom counts per 10 seconds). */
int state_outbox_rate_window(struct state_store *st, const char *destination, int limit,
                             int window_ms, const char *member, state_outbox_rate_fn *fn,
                             void *arg);

/* Makes every user waiting out a backoff due now (Customer.io is reachable again, or
 * accepts the credentials again), over all partitions. fn(n) gets the number woken, or -1
 * when Redis failed; fn may be NULL. Returns 0 or -1 (fn is then not called). */
typedef void state_outbox_count_fn(long long n, void *arg);
int state_outbox_wake(struct state_store *st, int64_t now_ms, state_outbox_count_fn *fn,
                      void *arg);

/* Queues a user for a Customer.io write now (operator resync). */
int state_outbox_resync(struct state_store *st, const char *uid, state_outbox_done_fn *fn,
                        void *arg);

/* Queue depth and the oldest due time over all partitions. */
struct state_outbox_stats {
    long long depth;           /* users queued (including leased ones) */
    int64_t oldest_due_ms;     /* smallest due time, 0 when empty */
    long long dead_letters;
};
typedef void state_outbox_stats_fn(const struct state_outbox_stats *s, void *arg);

/* A backoff jitter factor in [0.5, 1.5) as the ack scripts take it (ack.lua, job_ack.lua
 * share one retry policy). */
void state_outbox_jitter(char *buf, size_t n);

/* Seconds the most overdue queued item has been due. Leased items' due times lie in the
 * future, so only past-due work has an age (0 when none). */
double state_outbox_oldest_age_s(const struct state_outbox_stats *s, int64_t now_ms);
int state_outbox_stats(struct state_store *st, const char *destination,
                       state_outbox_stats_fn *fn, void *arg);

/* Dead-letter listing, newest first, `limit` entries before `cursor` (NULL: newest).
 * fn gets a JSON object {"items": [...], "next_cursor": id|null} (borrowed) or NULL. */
typedef void state_outbox_json_fn(json_t *result, void *arg);
int state_outbox_dead_letters(struct state_store *st, const char *destination,
                              const char *cursor, int limit, state_outbox_json_fn *fn, void *arg);

/* Replays one dead letter (id) or, with id NULL, up to `limit` of them: requeues the
 * user (and the event entry), then deletes the dead letter. fn gets {"replayed": n}
 * or NULL on Redis failure; n is 0 for an unknown id. */
int state_outbox_replay(struct state_store *st, const char *destination, const char *id,
                        int limit, state_outbox_json_fn *fn, void *arg);

#endif
