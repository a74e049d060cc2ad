/* state_jobs: the Intercom worker's durable jobs, on the same Redis outbox design as the
 * Customer.io queue (state_outbox): recorded atomically, leased with an expiry, removed
 * only once done or dead-lettered, retried with the same backoff, dead letters in the
 * same per-destination stream (destination "intercom"), under the same rate limiter.
 *
 * Jobs:  "e:<event id>"    forward a Customer.io reporting event (POST /events)
 *        "l:<contact id>"  look a contact up (GET /contacts/{id}) to learn its external_id
 *        "r:<ticket id>"   re-check a long-open ticket (GET /conversations|tickets/{id})
 * Look-ups are queued by link.lua and re-checks by reconcile.lua, atomically with the
 * contact or ticket keys they concern. */
#ifndef STATE_JOBS_H
#define STATE_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "state/state_store.h"

/* Queues a job. dedupe_ttl > 0 makes it once-only for that many seconds (keyed by the
 * routing id). fn gets "queued", "duplicate", "pending", or NULL when Redis failed.
 * Returns 0 or -1 (fn not called). */
typedef void state_jobs_added_fn(const char *status, void *arg);
int state_jobs_add(struct state_store *st, const char *job_id, const char *record,
                   int64_t dedupe_ttl, state_jobs_added_fn *fn, void *arg);

/* One leased job. */
struct state_job {
    char *id;
    char *record;
};

/* Leases due jobs from `n` partitions starting at `first`. fn gets the jobs (borrowed
 * during the call) or jobs == NULL when Redis failed. */
typedef void state_jobs_leased_fn(struct state_job *jobs, size_t n, void *arg);
int state_jobs_lease(struct state_store *st, unsigned first, unsigned n, int64_t now_ms,
                     int64_t lease_ms, size_t max_per_partition, state_jobs_leased_fn *fn,
                     void *arg);

/* Reports one job: done (retry 0) or retry. fn gets "done", "retry", "exhausted" or
 * NULL when Redis failed. */
struct state_job_ack {
    const char *id;
    int retry;
    int uncounted;          /* rate limited or paused: not a failed attempt */
    int64_t not_before_ms;
    int64_t give_up_ms;
};
typedef void state_jobs_acked_fn(const char *status, void *arg);
int state_jobs_ack(struct state_store *st, const struct state_job_ack *a, int64_t now_ms,
                   state_jobs_acked_fn *fn, void *arg);

/* The periodic sweep of one partition (reconcile.lua on each of its buckets), unless
 * another worker swept it within interval_ms: drops ticket index records past their
 * expiry and contact links unused for link_ttl seconds, and queues re-checks of tickets
 * open since before `cutoff` (unix seconds; -1: queue none), at most `max` per bucket.
 * fn gets the number queued (-1: skipped, swept recently; -2: Redis failed). */
typedef void state_jobs_scan_fn(long long queued, void *arg);
int state_jobs_sweep(struct state_store *st, unsigned partition, int64_t now_ms,
                     int64_t interval_ms, int64_t cutoff, size_t max, int64_t link_ttl,
                     state_jobs_scan_fn *fn, void *arg);

#endif
