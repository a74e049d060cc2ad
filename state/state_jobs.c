/* state_jobs: the Intercom worker's durable jobs. See state_jobs.h. */
#include "state/state_jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/state_keys.h"
#include "state/state_outbox.h"
#include "state/state_ulid.h"

static void i64(char *buf, size_t n, int64_t v) {
    snprintf(buf, n, "%lld", (long long)v);
}

static char *xstrndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d == NULL)
        abort();
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/*---------------------------------------------------------------------------
 * Add
 *--------------------------------------------------------------------------*/

struct status_ctx {
    void (*fn)(const char *status, void *arg);
    void *arg;
};

static void on_status(struct state_store *st, redisReply *r, void *arg) {
    struct status_ctx *c = arg;
    (void)st;
    if (r != NULL && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING))
        c->fn(r->str, c->arg);
    else
        c->fn(NULL, c->arg);
    free(c);
}

int state_jobs_add(struct state_store *st, const char *job_id, const char *record,
                   int64_t dedupe_ttl, state_jobs_added_fn *fn, void *arg) {
    if (!state_store_ready(st) || strlen(job_id) < 3)
        return -1;
    struct status_ctx *c = malloc(sizeof(*c));
    if (c == NULL)
        return -1;
    c->fn = fn;
    c->arg = arg;
    unsigned p = state_job_partition(job_id);
    char q[STATE_KEY_MAX], rec[STATE_KEY_MAX], dd[STATE_KEY_MAX], now[24], ttl[24];
    state_key_jobs_n(q, p);
    state_key_job_records_n(rec, p);
    state_key_cio_seen(dd, job_id + 2);
    i64(now, sizeof(now), (int64_t)state_now_ms());
    i64(ttl, sizeof(ttl), dedupe_ttl);
    const char *argv[] = {q, rec, dd, job_id, record, now, ttl};
    if (state_store_eval(st, STATE_SCRIPT_JOB_ADD, on_status, c, 3, 7, argv, NULL) < 0) {
        free(c);
        return -1;
    }
    return 0;
}

/*---------------------------------------------------------------------------
 * Lease
 *--------------------------------------------------------------------------*/

struct lease_ctx {
    state_jobs_leased_fn *fn;
    void *arg;
    int remaining;
    int failed;
    size_t n, cap;
    struct state_job *jobs;
};

static void on_lease(struct state_store *st, redisReply *r, void *arg) {
    struct lease_ctx *c = arg;
    (void)st;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        c->failed = 1;
    } else {
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            if (c->n == c->cap) {
                c->cap = c->cap ? c->cap * 2 : 32;
                struct state_job *g = realloc(c->jobs, c->cap * sizeof(*g));
                if (g == NULL)
                    abort();
                c->jobs = g;
            }
            c->jobs[c->n].id = xstrndup(r->element[i]->str, r->element[i]->len);
            c->jobs[c->n].record = xstrndup(r->element[i + 1]->str, r->element[i + 1]->len);
            c->n++;
        }
    }
    if (--c->remaining > 0)
        return;
    c->fn(c->failed && c->n == 0 ? NULL : c->jobs, c->n, c->arg);
    for (size_t i = 0; i < c->n; i++) {
        free(c->jobs[i].id);
        free(c->jobs[i].record);
    }
    free(c->jobs);
    free(c);
}

int state_jobs_lease(struct state_store *st, unsigned first, unsigned n, int64_t now_ms,
                     int64_t lease_ms, size_t max_per_partition, state_jobs_leased_fn *fn,
                     void *arg) {
    if (!state_store_ready(st) || n == 0)
        return -1;
    struct lease_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->fn = fn;
    c->arg = arg;
    char now[24], lease[24], max[24];
    i64(now, sizeof(now), now_ms);
    i64(lease, sizeof(lease), lease_ms);
    i64(max, sizeof(max), (int64_t)max_per_partition);
    for (unsigned i = 0; i < n; i++) {
        unsigned p = (first + i) % STATE_PARTITIONS;
        char q[STATE_KEY_MAX], rec[STATE_KEY_MAX];
        state_key_jobs_n(q, p);
        state_key_job_records_n(rec, p);
        const char *argv[] = {q, rec, now, lease, max};
        if (state_store_eval(st, STATE_SCRIPT_JOB_LEASE, on_lease, c, 2, 5, argv, NULL) == 0)
            c->remaining++;
    }
    if (c->remaining == 0) {
        free(c);
        return -1;
    }
    return 0;
}

/*---------------------------------------------------------------------------
 * Ack
 *--------------------------------------------------------------------------*/

int state_jobs_ack(struct state_store *st, const struct state_job_ack *a, int64_t now_ms,
                   state_jobs_acked_fn *fn, void *arg) {
    struct status_ctx *c = malloc(sizeof(*c));
    if (c == NULL)
        return -1;
    c->fn = fn;
    c->arg = arg;
    unsigned p = state_job_partition(a->id);
    char q[STATE_KEY_MAX], rec[STATE_KEY_MAX], att[STATE_KEY_MAX];
    char now[24], nb[24], jitter[32], give_up[24];
    state_key_jobs_n(q, p);
    state_key_job_records_n(rec, p);
    state_key_job_attempts_n(att, p);
    i64(now, sizeof(now), now_ms);
    i64(nb, sizeof(nb), a->not_before_ms);
    i64(give_up, sizeof(give_up), a->give_up_ms);
    state_outbox_jitter(jitter, sizeof(jitter));
    const char *argv[] = {q, rec, att, a->id, a->retry ? "retry" : "done", now, nb, jitter,
                          give_up, a->uncounted ? "1" : "0"};
    if (state_store_eval(st, STATE_SCRIPT_JOB_ACK, on_status, c, 3, 10, argv, NULL) < 0) {
        free(c);
        return -1;
    }
    return 0;
}

/*---------------------------------------------------------------------------
 * Partition sweep (reconciliation and pruning)
 *--------------------------------------------------------------------------*/

struct sweep_ctx {
    struct state_store *st;
    unsigned partition;
    char now[24], now_ms[24], cutoff[24], max[24], link_day[24];
    int pending;
    int failed;
    long long queued;
    state_jobs_scan_fn *fn;
    void *arg;
};

static void sweep_finish(struct sweep_ctx *c, long long result) {
    c->fn(result, c->arg);
    free(c);
}

static void on_sweep_bucket(struct state_store *st, redisReply *r, void *arg) {
    struct sweep_ctx *c = arg;
    (void)st;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        c->queued += r->integer;
    else
        c->failed = 1;
    if (--c->pending == 0)
        sweep_finish(c, c->failed ? -2 : c->queued);
}

static void on_sweep_lock(struct state_store *st, redisReply *r, void *arg) {
    struct sweep_ctx *c = arg;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        sweep_finish(c, -2);
        return;
    }
    if (r->type != REDIS_REPLY_STATUS) { /* nil: another replica swept it recently */
        sweep_finish(c, -1);
        return;
    }
    c->pending = 1; /* held while sending */
    for (unsigned b = 0; b < STATE_BUCKETS; b++) {
        char tk[STATE_KEY_MAX], ck[STATE_KEY_MAX], q[STATE_KEY_MAX], rec[STATE_KEY_MAX];
        state_key_ticket_bucket_n(tk, c->partition, b);
        state_key_contact_bucket_n(ck, c->partition, b);
        state_key_jobs_n(q, c->partition);
        state_key_job_records_n(rec, c->partition);
        const char *argv[] = {tk, ck, q, rec, c->now, c->now_ms, c->cutoff, c->max, c->link_day};
        if (state_store_eval(st, STATE_SCRIPT_RECONCILE, on_sweep_bucket, c, 4, 9, argv, NULL) < 0) {
            c->failed = 1;
            break;
        }
        c->pending++;
    }
    if (--c->pending == 0)
        sweep_finish(c, c->failed ? -2 : c->queued);
}

int state_jobs_sweep(struct state_store *st, unsigned partition, int64_t now_ms,
                     int64_t interval_ms, int64_t cutoff, size_t max, int64_t link_ttl,
                     state_jobs_scan_fn *fn, void *arg) {
    struct sweep_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->st = st;
    c->partition = partition;
    c->fn = fn;
    c->arg = arg;
    i64(c->now, sizeof(c->now), now_ms / 1000);
    i64(c->now_ms, sizeof(c->now_ms), now_ms);
    if (cutoff >= 0)
        i64(c->cutoff, sizeof(c->cutoff), cutoff);
    i64(c->max, sizeof(c->max), (int64_t)max);
    i64(c->link_day, sizeof(c->link_day), (now_ms / 1000 - link_ttl) / 86400);
    char lock[STATE_KEY_MAX], iv[24];
    state_key_reconcile_lock_n(lock, partition);
    i64(iv, sizeof(iv), interval_ms);
    const char *argv[] = {"SET", lock, "1", "NX", "PX", iv};
    if (state_store_command(st, on_sweep_lock, c, 6, argv, NULL) < 0) {
        free(c);
        return -1;
    }
    return 0;
}
