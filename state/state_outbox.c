/* state_outbox: the durable Customer.io work queue. See state_outbox.h. */
#include "state/state_outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "state/state_keys.h"
#include "state/state_ulid.h"

#define DLQ_MAXLEN "100000"

/* The shared Customer.io budget is CIO_RATE_LIMIT requests in any one second as
 * Customer.io counts them: at arrival. A burst granted the moment the previous one leaves
 * the window reaches Customer.io spread by a few ms of scheduling and network jitter, so
 * its last request could share a second with the previous burst's first. The window
 * enforced is therefore a tenth longer than a second (at most 9% of the budget unused). */
#define RATE_WINDOW_MS 1100

/* Users woken per partition and call (lease.lua "wake"). */
#define WAKE_MAX "100000"

static char *xstrndup(const char *s, size_t n) {
    char *d = strndup(s, n);
    if (d == NULL)
        abort();
    return d;
}

static void i64(char *buf, size_t n, int64_t v) {
    snprintf(buf, n, "%lld", (long long)v);
}

static void dlq_key(char *buf, size_t n, const char *destination) {
    snprintf(buf, n, "sd:{dlq}:%s", destination);
}

/*---------------------------------------------------------------------------
 * Lease
 *--------------------------------------------------------------------------*/

struct lease_ctx {
    state_outbox_leased_fn *fn;
    void *arg;
    int remaining;
    int failed;
    size_t n, cap;
    char **uids;
};

static void on_lease(struct state_store *st, redisReply *r, void *arg) {
    struct lease_ctx *c = arg;
    (void)st;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        c->failed = 1;
    } else {
        for (size_t i = 0; i < r->elements; i++) {
            if (c->n == c->cap) {
                c->cap = c->cap ? c->cap * 2 : 64;
                char **g = realloc(c->uids, c->cap * sizeof(char *));
                if (g == NULL)
                    abort();
                c->uids = g;
            }
            c->uids[c->n++] = xstrndup(r->element[i]->str, r->element[i]->len);
        }
    }
    if (--c->remaining > 0)
        return;
    /* A partial lease is still a lease: hand over what was taken even if one failed. */
    c->fn(c->failed && c->n == 0 ? NULL : c->uids, c->n, c->arg);
    for (size_t i = 0; i < c->n; i++)
        free(c->uids[i]);
    free(c->uids);
    free(c);
}

int state_outbox_lease(struct state_store *st, unsigned first, unsigned n, int64_t now_ms,
                       int64_t lease_ms, size_t max_per_partition, state_outbox_leased_fn *fn,
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
        char q[STATE_KEY_MAX], w[STATE_KEY_MAX], rk[STATE_KEY_MAX];
        state_key_queue_n(q, p);
        state_key_window_n(w, p);
        state_key_retry_n(rk, p);
        const char *argv[] = {q, w, rk, now, lease, max, "lease"};
        if (state_store_eval(st, STATE_SCRIPT_LEASE, on_lease, c, 3, 7, argv, NULL) == 0)
            c->remaining++;
        else
            c->failed = 1;
    }
    if (c->remaining == 0) {
        free(c);
        return -1;
    }
    return 0;
}

/*---------------------------------------------------------------------------
 * Read
 *--------------------------------------------------------------------------*/

struct read_ctx {
    state_outbox_read_fn *fn;
    void *arg;
    int remaining;
    int failed;
    size_t n;
    struct state_outbox_user *users;
};

struct read_slot {
    struct read_ctx *c;
    size_t idx;
    int is_events;
};

static void fill_user(struct state_outbox_user *u, redisReply *r) {
    size_t n = r->elements / 2;
    const char **f = calloc(n + 1, sizeof(char *)), **v = calloc(n + 1, sizeof(char *));
    size_t *fl = calloc(n + 1, sizeof(size_t)), *vl = calloc(n + 1, sizeof(size_t));
    if (f == NULL || v == NULL || fl == NULL || vl == NULL)
        abort();
    u->profile = json_object();
    for (size_t i = 0; i < n; i++) {
        redisReply *k = r->element[2 * i], *val = r->element[2 * i + 1];
        f[i] = k->str;
        fl[i] = k->len;
        v[i] = val->str;
        vl[i] = val->len;
        if (k->len == 2 && memcmp(k->str, "sv", 2) == 0) {
            free(u->sv);
            u->sv = xstrndup(val->str, val->len);
        } else if (k->len > 2 && memcmp(k->str, "a:", 2) == 0) {
            /* Profile attributes are stored JSON-encoded so types survive. */
            json_t *jv = json_loadb(val->str, val->len, JSON_DECODE_ANY, NULL);
            if (jv != NULL)
                json_object_set_new(u->profile, k->str + 2, jv);
        }
    }
    if (state_user_from_fields(&u->user, n, f, fl, v, vl) < 0)
        abort();
    free(f);
    free(v);
    free(fl);
    free(vl);
}

static void on_read(struct state_store *st, redisReply *r, void *arg) {
    struct read_slot *s = arg;
    struct read_ctx *c = s->c;
    (void)st;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        c->failed = 1;
    } else if (s->is_events) {
        struct state_outbox_user *u = &c->users[s->idx];
        u->events = calloc(r->elements + 1, sizeof(char *));
        if (u->events == NULL)
            abort();
        for (size_t i = 0; i < r->elements; i++)
            u->events[i] = xstrndup(r->element[i]->str, r->element[i]->len);
        u->nevents = r->elements;
    } else {
        fill_user(&c->users[s->idx], r);
    }
    free(s);
    if (--c->remaining > 0)
        return;
    if (c->failed) {
        for (size_t i = 0; i < c->n; i++)
            state_outbox_user_clear(&c->users[i]);
        free(c->users);
        c->fn(NULL, 0, c->arg);
    } else {
        c->fn(c->users, c->n, c->arg);
    }
    free(c);
}

int state_outbox_read(struct state_store *st, char *const *uids, size_t n, size_t max_events,
                      state_outbox_read_fn *fn, void *arg) {
    if (!state_store_ready(st) || n == 0)
        return -1;
    struct read_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->users = calloc(n, sizeof(*c->users));
    if (c->users == NULL) {
        free(c);
        return -1;
    }
    c->fn = fn;
    c->arg = arg;
    c->n = n;
    char stop[24];
    i64(stop, sizeof(stop), (int64_t)max_events - 1);
    for (size_t i = 0; i < n; i++) {
        c->users[i].uid = xstrndup(uids[i], strlen(uids[i]));
        c->users[i].sv = xstrndup("", 0);
        for (int ev = 0; ev < 2; ev++) {
            char key[STATE_KEY_MAX];
            size_t klen = ev ? state_key_events(key, uids[i]) : state_key_user(key, uids[i]);
            struct read_slot *s = malloc(sizeof(*s));
            if (s == NULL)
                abort();
            s->c = c;
            s->idx = i;
            s->is_events = ev;
            int rc;
            if (ev) {
                const char *argv[] = {"LRANGE", key, "0", stop};
                const size_t lens[] = {6, klen, 1, strlen(stop)};
                rc = state_store_command(st, on_read, s, 4, argv, lens);
            } else {
                const char *argv[] = {"HGETALL", key};
                const size_t lens[] = {7, klen};
                rc = state_store_command(st, on_read, s, 2, argv, lens);
            }
            if (rc < 0) {
                free(s);
                c->failed = 1;
            } else {
                c->remaining++;
            }
        }
    }
    if (c->remaining == 0) {
        for (size_t i = 0; i < n; i++)
            state_outbox_user_clear(&c->users[i]);
        free(c->users);
        free(c);
        return -1;
    }
    return 0;
}

void state_outbox_user_clear(struct state_outbox_user *u) {
    free(u->uid);
    free(u->sv);
    state_user_clear(&u->user);
    json_decref(u->profile);
    for (size_t i = 0; i < u->nevents; i++)
        free(u->events[i]);
    free(u->events);
    memset(u, 0, sizeof(*u));
}

/*---------------------------------------------------------------------------
 * Ack
 *--------------------------------------------------------------------------*/

struct ack_ctx {
    state_outbox_acked_fn *fn;
    void *arg;
    int remaining;
    int failed;
    size_t n;
    char **statuses;
};

struct ack_slot {
    struct ack_ctx *c;
    size_t idx;
};

static void on_ack(struct state_store *st, redisReply *r, void *arg) {
    struct ack_slot *s = arg;
    struct ack_ctx *c = s->c;
    (void)st;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        c->failed = 1;
    else
        c->statuses[s->idx] = xstrndup(r->element[0]->str, r->element[0]->len);
    free(s);
    if (--c->remaining > 0)
        return;
    c->fn(c->failed ? NULL : (const char *const *)(void *)c->statuses, c->n, c->arg);
    for (size_t i = 0; i < c->n; i++)
        free(c->statuses[i]);
    free(c->statuses);
    free(c);
}

int state_outbox_ack(struct state_store *st, const struct state_outbox_ack *acks, size_t n,
                     int64_t now_ms, state_outbox_acked_fn *fn, void *arg) {
    if (!state_store_ready(st) || n == 0)
        return -1;
    struct ack_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->statuses = calloc(n, sizeof(char *));
    if (c->statuses == NULL) {
        free(c);
        return -1;
    }
    c->fn = fn;
    c->arg = arg;
    c->n = n;
    char now[24];
    i64(now, sizeof(now), now_ms);
    for (size_t i = 0; i < n; i++) {
        const struct state_outbox_ack *a = &acks[i];
        char ukey[STATE_KEY_MAX], qkey[STATE_KEY_MAX], ekey[STATE_KEY_MAX], wkey[STATE_KEY_MAX];
        char rkey[STATE_KEY_MAX];
        char nb[24], jitter[32], giveup[24], window[24];
        unsigned part = state_partition(a->uid, strlen(a->uid));
        state_key_user(ukey, a->uid);
        state_key_queue(qkey, a->uid);
        state_key_events(ekey, a->uid);
        state_key_window_n(wkey, part);
        state_key_retry_n(rkey, part);
        i64(nb, sizeof(nb), a->not_before_ms);
        state_outbox_jitter(jitter, sizeof(jitter));
        i64(giveup, sizeof(giveup), a->give_up_ms);
        i64(window, sizeof(window), a->window_end_ms);
        size_t argc = 14 + a->nfinished;
        const char **argv = calloc(argc, sizeof(char *));
        if (argv == NULL)
            abort();
        argv[0] = ukey;
        argv[1] = qkey;
        argv[2] = ekey;
        argv[3] = wkey;
        argv[4] = rkey;
        argv[5] = a->uid;
        argv[6] = now;
        argv[7] = a->sv ? a->sv : "";
        argv[8] = a->lost ? "lost" : a->retry ? "retry" : "done";
        argv[9] = nb;
        argv[10] = jitter;
        argv[11] = giveup;
        argv[12] = window;
        argv[13] = a->paused ? "1" : "0";
        for (size_t j = 0; j < a->nfinished; j++)
            argv[14 + j] = a->finished[j];
        struct ack_slot *s = malloc(sizeof(*s));
        if (s == NULL)
            abort();
        s->c = c;
        s->idx = i;
        if (state_store_eval(st, STATE_SCRIPT_ACK, on_ack, s, 5, (int)argc, argv, NULL) == 0) {
            c->remaining++;
        } else {
            free(s);
            c->failed = 1;
        }
        free(argv);
    }
    if (c->remaining == 0) {
        free(c->statuses);
        free(c);
        return -1;
    }
    return 0;
}

/*---------------------------------------------------------------------------
 * Small commands
 *--------------------------------------------------------------------------*/

struct done_ctx {
    state_outbox_done_fn *fn;
    void *arg;
    int remaining;
    int failed;
};

static void on_done(struct state_store *st, redisReply *r, void *arg) {
    struct done_ctx *c = arg;
    (void)st;
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        c->failed = 1;
    if (--c->remaining > 0)
        return;
    c->fn(!c->failed, c->arg);
    free(c);
}

int state_outbox_dead_letter(struct state_store *st, const struct state_dead_letter *dl,
                             size_t n, state_outbox_done_fn *fn, void *arg) {
    if (!state_store_ready(st) || n == 0)
        return -1;
    struct done_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->fn = fn;
    c->arg = arg;
    for (size_t i = 0; i < n; i++) {
        char key[STATE_KEY_MAX], status[24], at[24];
        dlq_key(key, sizeof(key), dl[i].destination);
        i64(status, sizeof(status), dl[i].status);
        i64(at, sizeof(at), (int64_t)state_now_ms());
        const char *argv[] = {"XADD", key, "MAXLEN", "~", DLQ_MAXLEN, "*",
                              "user_id", dl[i].uid, "kind", dl[i].kind,
                              "reason", dl[i].reason, "status", status,
                              "response", dl[i].response ? dl[i].response : "",
                              "payload", dl[i].payload ? dl[i].payload : "",
                              "record", dl[i].record ? dl[i].record : "",
                              "at", at};
        if (state_store_command(st, on_done, c, (int)(sizeof(argv) / sizeof(argv[0])), argv,
                                NULL) == 0)
            c->remaining++;
        else
            c->failed = 1;
    }
    if (c->remaining == 0) {
        free(c);
        return -1;
    }
    return 0;
}

int state_outbox_resync(struct state_store *st, const char *uid, state_outbox_done_fn *fn,
                        void *arg) {
    struct done_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->fn = fn;
    c->arg = arg;
    char key[STATE_KEY_MAX], now[24];
    state_key_queue(key, uid);
    i64(now, sizeof(now), (int64_t)state_now_ms());
    const char *argv[] = {"ZADD", key, now, uid};
    if (state_store_command(st, on_done, c, 4, argv, NULL) < 0) {
        free(c);
        return -1;
    }
    c->remaining = 1;
    return 0;
}

struct rate_ctx {
    state_outbox_rate_fn *fn;
    void *arg;
};

static void on_rate(struct state_store *st, redisReply *r, void *arg) {
    struct rate_ctx *c = arg;
    (void)st;
    c->fn(r != NULL && r->type == REDIS_REPLY_INTEGER ? (long)r->integer : -1, c->arg);
    free(c);
}

int state_outbox_rate(struct state_store *st, const char *destination, int limit,
                      const char *member, state_outbox_rate_fn *fn, void *arg) {
    return state_outbox_rate_window(st, destination, limit, RATE_WINDOW_MS, member, fn, arg);
}

int state_outbox_rate_window(struct state_store *st, const char *destination, int limit,
                             int window_ms, const char *member, state_outbox_rate_fn *fn,
                             void *arg) {
    struct rate_ctx *c = malloc(sizeof(*c));
    if (c == NULL)
        return -1;
    c->fn = fn;
    c->arg = arg;
    char key[STATE_KEY_MAX], lim[24], win[24];
    snprintf(key, sizeof(key), "sd:{rl}:%s", destination);
    i64(lim, sizeof(lim), limit);
    i64(win, sizeof(win), window_ms);
    const char *argv[] = {key, lim, win, member};
    if (state_store_eval(st, STATE_SCRIPT_RATELIMIT, on_rate, c, 1, 4, argv, NULL) < 0) {
        free(c);
        return -1;
    }
    return 0;
}

struct wake_ctx {
    state_outbox_count_fn *fn;
    void *arg;
    int remaining;
    int failed;
    long long n;
};

static void on_wake(struct state_store *st, redisReply *r, void *arg) {
    struct wake_ctx *c = arg;
    (void)st;
    if (r == NULL || r->type != REDIS_REPLY_INTEGER)
        c->failed = 1;
    else
        c->n += r->integer;
    if (--c->remaining > 0)
        return;
    if (c->fn != NULL)
        c->fn(c->failed && c->n == 0 ? -1 : c->n, c->arg);
    free(c);
}

int state_outbox_wake(struct state_store *st, int64_t now_ms, state_outbox_count_fn *fn,
                      void *arg) {
    if (!state_store_ready(st))
        return -1;
    struct wake_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->fn = fn;
    c->arg = arg;
    char now[24];
    i64(now, sizeof(now), now_ms);
    for (unsigned p = 0; p < STATE_PARTITIONS; p++) {
        char q[STATE_KEY_MAX], w[STATE_KEY_MAX], rk[STATE_KEY_MAX];
        state_key_queue_n(q, p);
        state_key_window_n(w, p);
        state_key_retry_n(rk, p);
        const char *argv[] = {q, w, rk, now, "0", WAKE_MAX, "wake"};
        if (state_store_eval(st, STATE_SCRIPT_LEASE, on_wake, c, 3, 7, argv, NULL) == 0)
            c->remaining++;
        else
            c->failed = 1;
    }
    if (c->remaining == 0) {
        free(c);
        return -1;
    }
    return 0;
}

/*---------------------------------------------------------------------------
 * Operator views
 *--------------------------------------------------------------------------*/

struct stats_ctx {
    state_outbox_stats_fn *fn;
    void *arg;
    int remaining;
    int failed;
    struct state_outbox_stats s;
};

static void stats_step(struct stats_ctx *c) {
    if (--c->remaining > 0)
        return;
    c->fn(c->failed ? NULL : &c->s, c->arg);
    free(c);
}

static void on_stats(struct state_store *st, redisReply *r, void *arg) {
    struct stats_ctx *c = arg;
    (void)st;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        c->failed = 1;
    } else if (r->type == REDIS_REPLY_INTEGER) {
        c->s.depth += r->integer;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        int64_t due = (int64_t)strtoll(r->element[1]->str, NULL, 10);
        if (c->s.oldest_due_ms == 0 || due < c->s.oldest_due_ms)
            c->s.oldest_due_ms = due;
    }
    stats_step(c);
}

static void on_stats_dlq(struct state_store *st, redisReply *r, void *arg) {
    struct stats_ctx *c = arg;
    (void)st;
    if (r == NULL || r->type != REDIS_REPLY_INTEGER)
        c->failed = 1;
    else
        c->s.dead_letters = r->integer;
    stats_step(c);
}

int state_outbox_stats(struct state_store *st, const char *destination,
                       state_outbox_stats_fn *fn, void *arg) {
    if (!state_store_ready(st))
        return -1;
    struct stats_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->fn = fn;
    c->arg = arg;
    c->remaining = 1;
    for (unsigned p = 0; p < STATE_PARTITIONS; p++) {
        char q[STATE_KEY_MAX];
        if (strcmp(destination, "intercom") == 0)
            state_key_jobs_n(q, p);
        else
            state_key_queue_n(q, p);
        const char *card[] = {"ZCARD", q};
        const char *first[] = {"ZRANGE", q, "0", "0", "WITHSCORES"};
        if (state_store_command(st, on_stats, c, 2, card, NULL) == 0)
            c->remaining++;
        if (state_store_command(st, on_stats, c, 5, first, NULL) == 0)
            c->remaining++;
    }
    char key[STATE_KEY_MAX];
    dlq_key(key, sizeof(key), destination);
    const char *xlen[] = {"XLEN", key};
    if (state_store_command(st, on_stats_dlq, c, 2, xlen, NULL) == 0)
        c->remaining++;
    stats_step(c); /* releases the hold taken above */
    return 0;
}

/* Turns one XRANGE entry into {"id", "destination", field: value...}. */
static json_t *entry_json(const redisReply *e, const char *destination) {
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
        return NULL;
    json_t *o = json_object();
    json_object_set_new(o, "id", json_stringn(e->element[0]->str, e->element[0]->len));
    json_object_set_new(o, "destination", json_string(destination));
    const redisReply *f = e->element[1];
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const char *k = f->element[i]->str;
        const redisReply *v = f->element[i + 1];
        if (strcmp(k, "status") == 0 || strcmp(k, "at") == 0)
            json_object_set_new(o, k, json_integer(strtoll(v->str, NULL, 10)));
        else if (strcmp(k, "record") != 0)
            json_object_set_new(o, k, json_stringn(v->str, v->len));
    }
    return o;
}

struct list_ctx {
    state_outbox_json_fn *fn;
    void *arg;
    char *destination;
    int limit;
};

static void on_list(struct state_store *st, redisReply *r, void *arg) {
    struct list_ctx *c = arg;
    (void)st;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        c->fn(NULL, c->arg);
    } else {
        json_t *out = json_object(), *items = json_array();
        size_t shown = r->elements > (size_t)c->limit ? (size_t)c->limit : r->elements;
        for (size_t i = 0; i < shown; i++) {
            json_t *o = entry_json(r->element[i], c->destination);
            if (o != NULL)
                json_array_append_new(items, o);
        }
        json_object_set_new(out, "items", items);
        /* One more than asked for was fetched: it says whether a next page exists. */
        if (r->elements > (size_t)c->limit && shown > 0)
            json_object_set_new(out, "next_cursor",
                                json_stringn(r->element[shown - 1]->element[0]->str,
                                             r->element[shown - 1]->element[0]->len));
        else
            json_object_set_new(out, "next_cursor", json_null());
        c->fn(out, c->arg);
        json_decref(out);
    }
    free(c->destination);
    free(c);
}

int state_outbox_dead_letters(struct state_store *st, const char *destination,
                              const char *cursor, int limit, state_outbox_json_fn *fn, void *arg) {
    struct list_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->fn = fn;
    c->arg = arg;
    c->destination = xstrndup(destination, strlen(destination));
    c->limit = limit;
    char key[STATE_KEY_MAX], end[80], count[24];
    dlq_key(key, sizeof(key), destination);
    if (cursor != NULL)
        snprintf(end, sizeof(end), "(%s", cursor); /* exclusive: the page after the cursor */
    else
        snprintf(end, sizeof(end), "+");
    i64(count, sizeof(count), limit + 1);
    const char *argv[] = {"XREVRANGE", key, end, "-", "COUNT", count};
    if (state_store_command(st, on_list, c, 6, argv, NULL) < 0) {
        free(c->destination);
        free(c);
        return -1;
    }
    return 0;
}

struct replay_ctx {
    struct state_store *st;
    state_outbox_json_fn *fn;
    void *arg;
    char *destination;
    int remaining;
    int failed;
    long long replayed;
};

static void replay_step(struct replay_ctx *c) {
    if (--c->remaining > 0)
        return;
    if (c->failed) {
        c->fn(NULL, c->arg);
    } else {
        json_t *o = json_object();
        json_object_set_new(o, "replayed", json_integer(c->replayed));
        c->fn(o, c->arg);
        json_decref(o);
    }
    free(c->destination);
    free(c);
}

static void on_replay_cmd(struct state_store *st, redisReply *r, void *arg) {
    struct replay_ctx *c = arg;
    (void)st;
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        c->failed = 1;
    replay_step(c);
}

static const redisReply *entry_field(const redisReply *e, const char *name) {
    const redisReply *f = e->element[1];
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        if (strcmp(f->element[i]->str, name) == 0)
            return f->element[i + 1];
    }
    return NULL;
}

/* Requeues each entry (its event back on the list, the user due now), then deletes it.
 * Requeue first: a crash in between replays it twice, and Customer.io drops the second
 * copy of an event by its id. */
static void on_replay_range(struct state_store *st, redisReply *r, void *arg) {
    struct replay_ctx *c = arg;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        c->failed = 1;
        replay_step(c);
        return;
    }
    char dkey[STATE_KEY_MAX], now[24];
    dlq_key(dkey, sizeof(dkey), c->destination);
    i64(now, sizeof(now), (int64_t)state_now_ms());
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
            continue;
        const redisReply *uid = entry_field(e, "user_id"), *rec = entry_field(e, "record");
        if (uid == NULL)
            continue;
        if (strcmp(c->destination, "intercom") == 0) {
            /* An Intercom job: its record names the job; queue it again as it was. */
            json_t *job = rec != NULL ? json_loadb(rec->str, rec->len, 0, NULL) : NULL;
            const char *jid = json_string_value(json_object_get(job, "job"));
            if (jid != NULL) {
                char jq[STATE_KEY_MAX], jr[STATE_KEY_MAX];
                unsigned p = state_job_partition(jid);
                state_key_jobs_n(jq, p);
                state_key_job_records_n(jr, p);
                const char *hset[] = {"HSET", jr, jid, rec->str};
                const size_t hlen[] = {4, strlen(jr), strlen(jid), rec->len};
                const char *zadd[] = {"ZADD", jq, now, jid};
                if (state_store_command(st, on_replay_cmd, c, 4, hset, hlen) == 0)
                    c->remaining++;
                if (state_store_command(st, on_replay_cmd, c, 4, zadd, NULL) == 0)
                    c->remaining++;
            }
            json_decref(job);
            const char *xdel[] = {"XDEL", dkey, e->element[0]->str};
            if (jid != NULL && state_store_command(st, on_replay_cmd, c, 3, xdel, NULL) == 0)
                c->remaining++;
            c->replayed += jid != NULL;
            continue;
        }
        char *u = xstrndup(uid->str, uid->len);
        char qkey[STATE_KEY_MAX], ekey[STATE_KEY_MAX];
        state_key_queue(qkey, u);
        state_key_events(ekey, u);
        if (rec != NULL && rec->len > 0) {
            const char *push[] = {"RPUSH", ekey, rec->str};
            const size_t plen[] = {5, strlen(ekey), rec->len};
            if (state_store_command(st, on_replay_cmd, c, 3, push, plen) == 0)
                c->remaining++;
        }
        const char *zadd[] = {"ZADD", qkey, now, u};
        if (state_store_command(st, on_replay_cmd, c, 4, zadd, NULL) == 0)
            c->remaining++;
        const char *xdel[] = {"XDEL", dkey, e->element[0]->str};
        if (state_store_command(st, on_replay_cmd, c, 3, xdel, NULL) == 0)
            c->remaining++;
        c->replayed++;
        free(u);
    }
    replay_step(c);
}

int state_outbox_replay(struct state_store *st, const char *destination, const char *id,
                        int limit, state_outbox_json_fn *fn, void *arg) {
    if (!state_store_ready(st))
        return -1;
    struct replay_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->st = st;
    c->fn = fn;
    c->arg = arg;
    c->destination = xstrndup(destination, strlen(destination));
    c->remaining = 1;
    char key[STATE_KEY_MAX], count[24];
    dlq_key(key, sizeof(key), destination);
    i64(count, sizeof(count), limit);
    int rc;
    if (id != NULL) {
        const char *argv[] = {"XRANGE", key, id, id};
        rc = state_store_command(st, on_replay_range, c, 4, argv, NULL);
    } else {
        const char *argv[] = {"XRANGE", key, "-", "+", "COUNT", count};
        rc = state_store_command(st, on_replay_range, c, 6, argv, NULL);
    }
    if (rc < 0) {
        free(c->destination);
        free(c);
        return -1;
    }
    return 0;
}

double state_outbox_oldest_age_s(const struct state_outbox_stats *s, int64_t now_ms) {
    return s->oldest_due_ms > 0 && s->oldest_due_ms < now_ms
               ? (double)(now_ms - s->oldest_due_ms) / 1000.0 : 0.0;
}

void state_outbox_jitter(char *buf, size_t n) {
    unsigned short rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
        rnd = 32768;
    snprintf(buf, n, "%.4f", 0.5 + (double)rnd / 65536.0);
}
