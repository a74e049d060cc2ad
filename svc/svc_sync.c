/* svc_sync: the Customer.io delivery worker. See svc_sync.h.
 *
 * Item outcomes and what they lead to:
 *   2xx (and no per-item error)       sent: events leave the list, the user the queue
 *   per-item error in a 207/200       that item is a dead letter; the rest are sent
 *   other 4xx (400, 404, 413, ...)    the request's items are dead letters
 *   408, 429, 5xx, network, timeout   retried with backoff (Retry-After and
 *                                     X-RateLimit-Reset honoured) for
 *                                     SUPPRESS_SYNC_GIVE_UP, then dead letters
 *   401, 403                          delivery pauses (nothing dead-lettered), /readyz
 *                                     says "unauthorized", a probe resumes it
 *   limits (checked before sending)   the item is a dead letter; a copied profile
 *                                     attribute over a limit is left out of the identify
 *                                     (and dead-lettered) so the support attributes go
 *   lease nearly out (rate-limit wait) not sent; the next lease sends it (below)
 * Without credentials every request is logged (dry run) and counted as sent.
 *
 * Outages. A 5xx or network failure makes the next tick probe Customer.io
 * (GET /api/v1/accounts/region); if the probe fails too, Customer.io is down and is
 * probed every SUPPRESS_SYNC_PROBE_MS. The first answer after that (probe or send) wakes
 * every user backing off (state_outbox_wake): however long their backoff has grown,
 * delivery resumes within one probe interval of Customer.io's return. A probe that
 * succeeds at once (one bad batch, not an outage) wakes nobody, so a failing user keeps
 * its own backoff. The 401/403 pause ends the same way.
 *
 * Leases. A round may wait for the shared rate limit. A request whose slot would come
 * when less than min(CIO_TIMEOUT_MS + 1 s, lease / 2) of the lease is left is not sent:
 * another worker may take the user once the lease runs out, and must not find it still
 * in flight here. Its user is reported "lost" (only its finished events leave the list);
 * the next lease sends the rest. */
#include "svc/svc_sync.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "state/state_keys.h"
#include "state/state_outbox.h"
#include "state/state_ulid.h"
#include "svc/svc_cio.h"
#include "svc/svc_log.h"
#include "svc/svc_metrics.h"

#define PARTITIONS_PER_ROUND 8
#define MAX_ROUNDS 2              /* rounds in flight per loop */
#define MAX_EVENTS_PER_USER 50
#define IDLE_MS 250
#define RESPONSE_KEEP 2048        /* bytes of an error answer kept in a dead letter */

/*---------------------------------------------------------------------------
 * Process-wide delivery status (all loops share one Customer.io workspace)
 *--------------------------------------------------------------------------*/

enum { REACHABLE = 0, SUSPECT, DOWN };

static atomic_int paused;              /* 401/403 seen, not yet cleared by a probe */
static atomic_int reach = REACHABLE;   /* SUSPECT: a send failed (5xx, network) and a
                                          probe will tell; DOWN: a probe failed too */
static atomic_int probe_inflight;
static atomic_llong next_probe_ms;
static atomic_int dry_run = -1;
static pthread_mutex_t reason_lock = PTHREAD_MUTEX_INITIALIZER;
static char pause_reason[160];         /* under reason_lock */

const char *svc_sync_status(void) {
    static _Thread_local char status_buf[200];
    if (atomic_load(&dry_run) == 1)
        return "dry_run";
    if (atomic_load(&paused)) {
        pthread_mutex_lock(&reason_lock);
        snprintf(status_buf, sizeof(status_buf), "unauthorized: %s", pause_reason);
        pthread_mutex_unlock(&reason_lock);
        return status_buf;
    }
    return "live";
}

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void count(const char *family, const char *help, const char *labels, uint64_t n) {
    svc_metrics_counter_add(family, help, labels, n);
}

#define M_REQ "suppressd_cio_requests_total"
#define M_REQ_HELP "Requests to Customer.io by outcome (dry_run: logged, not sent)."
#define M_ITEM "suppressd_cio_items_total"
#define M_ITEM_HELP "Identify and event items by outcome."

/*---------------------------------------------------------------------------
 * Rounds, requests, items
 *--------------------------------------------------------------------------*/

enum item_state { IT_PENDING = 0, IT_OK, IT_DEAD, IT_RETRY, IT_PAUSE, IT_DROPPED, IT_LOST };

struct item {
    int event;                 /* -1: the identify; -2: a profile attribute left out of it
                                  (a dead letter); else index in the user's events */
    enum item_state state;
    char *payload;             /* what is sent (JSON) */
    char *reason;              /* dead letter reason */
    long status;
    char *response;
    long long not_before_ms;   /* retry: unix ms from Retry-After */
};

struct ruser {
    struct state_outbox_user *u;
    json_t *attrs;
    size_t nitems;
    struct item *items;        /* [0] identify, then one per event */
    int exhausted;
};

struct round;

struct request {
    struct round *r;
    const char *method;
    char *url;
    char *body;
    size_t body_len;
    size_t nrefs;
    struct { size_t user, item; } *refs;  /* the items this request carries, in order */
    struct event *wait_ev;     /* waiting for a rate-limit slot */
};

struct round {
    struct svc_sync *s;
    struct round *prev, *next;
    struct state_outbox_user *users;
    size_t nall;               /* users leased (all freed with the round) */
    size_t nusers;             /* users still being reported (the exhausted ones on the
                                  final pass) */
    struct ruser *ru;
    size_t nreqs;
    struct request *reqs;
    size_t pending;            /* requests not yet answered */
    int64_t now;               /* unix seconds when the round read its users */
    long long lease_end;       /* monotonic ms when the users' lease runs out */
    int phase;                 /* 0 sending, 1 dead-lettering, 2 acking */
    int counted;               /* item metrics recorded */
    int final_pass;            /* reporting users whose retries ran out */
};

struct svc_sync {
    struct event_base *base;
    struct state_store *store;
    struct svc_curl *curl;
    const struct svc_config *cfg;
    int index;
    struct event *tick;
    struct event *stats_ev;     /* loop 0 only: refreshes the queue gauges */
    unsigned next_partition;
    unsigned empty_partitions;  /* consecutive partitions found with nothing due */
    int leasing;                /* a lease/read is in flight */
    long long lease_start;      /* monotonic ms when the lease in flight was asked for */
    int rounds;
    struct round *head;
    int stopping;
    unsigned long seq;
    int dry;
};

static void schedule(struct svc_sync *s, int ms);
static void round_finish(struct round *r);

static void item_clear(struct item *it) {
    free(it->payload);
    free(it->reason);
    free(it->response);
}

static void round_free(struct round *r) {
    struct svc_sync *s = r->s;
    if (r->prev)
        r->prev->next = r->next;
    else
        s->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    for (size_t i = 0; i < r->nreqs; i++) {
        struct request *q = &r->reqs[i];
        free(q->url);
        free(q->body);
        free(q->refs);
        if (q->wait_ev)
            event_free(q->wait_ev);
    }
    free(r->reqs);
    for (size_t i = 0; i < r->nall; i++) {
        struct ruser *ru = &r->ru[i];
        for (size_t j = 0; j < ru->nitems; j++)
            item_clear(&ru->items[j]);
        free(ru->items);
        json_decref(ru->attrs);
        state_outbox_user_clear(&r->users[i]);
    }
    free(r->ru);
    free(r->users);
    free(r);
    s->rounds--;
}

static char *truncated(const char *s, size_t n) {
    size_t len = strlen(s);
    return strndup(s, len < n ? len : n);
}

static void item_dead(struct item *it, const char *reason, long status, const char *response) {
    it->state = IT_DEAD;
    free(it->reason);
    it->reason = strdup(reason);
    it->status = status;
    free(it->response);
    it->response = truncated(response ? response : "", RESPONSE_KEEP);
}

/*---------------------------------------------------------------------------
 * Building requests
 *--------------------------------------------------------------------------*/

static char *dumps(const json_t *j) {
    char *t = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (t == NULL)
        abort();
    return t;
}

/* Leaves out of the identify every copied profile attribute Customer.io would refuse
 * (too long a name or value): each becomes a dead letter of its own (items from index
 * `first`), and the support attributes still go. Returns how many were left out. */
static size_t drop_bad_profile_attributes(struct ruser *ru, const json_t *profile,
                                          size_t first) {
    const char *key;
    json_t *v;
    void *tmp;
    size_t n = 0;
    char why[256];
    json_object_foreach_safe(ru->attrs, tmp, key, v) {
        /* Only the profile's own values: the support attributes win a name clash. */
        if (json_object_get(profile, key) != v)
            continue;
        const char *bad = cio_check_attribute(key, v, why, sizeof(why));
        if (bad == NULL)
            continue;
        struct item *it = &ru->items[first + n++];
        json_t *one = json_object();
        json_object_set(one, key, v);
        it->event = -2;
        it->payload = dumps(one);
        json_decref(one);
        item_dead(it, bad, 0, "");
        json_object_del(ru->attrs, key);
    }
    return n;
}

/* Prepares one user's items: the identify and its events, each checked against
 * Customer.io's limits. */
static void prepare_user(struct svc_sync *s, struct round *r, size_t i) {
    const struct svc_config *cfg = s->cfg;
    struct ruser *ru = &r->ru[i];
    struct state_outbox_user *u = &r->users[i];
    char why[256];
    ru->u = u;
    ru->nitems = 1 + u->nevents;
    /* Room for the profile attributes that may be left out (after the events). */
    ru->items = calloc(ru->nitems + json_object_size(u->profile), sizeof(struct item));
    if (ru->items == NULL)
        abort();
    ru->attrs = cio_attributes(&u->user, u->profile, &cfg->rules, r->now);
    if (u->profile != NULL && strncmp(u->uid, "intercom:", 9) != 0)
        ru->nitems += drop_bad_profile_attributes(ru, u->profile, ru->nitems);
    struct item *id = &ru->items[0];
    id->event = -1;
    id->payload = dumps(ru->attrs);
    const char *bad = cio_check_identify(u->uid, ru->attrs, why, sizeof(why));
    if (strncmp(u->uid, "intercom:", 9) == 0)
        id->state = IT_DROPPED; /* never written to Customer.io (should not be queued) */
    else if (bad != NULL)
        item_dead(id, bad, 0, "");
    for (size_t e = 0; e < u->nevents; e++) {
        struct item *it = &ru->items[1 + e];
        it->event = (int)e;
        const char *reason = NULL;
        json_t *ev = cio_event(u->events[e], &cfg->taxonomy, &reason);
        if (ev == NULL) {
            it->payload = strdup(u->events[e]);
            if (strcmp(reason, "event_disabled") == 0)
                it->state = IT_DROPPED;
            else
                item_dead(it, reason, 0, "");
            continue;
        }
        it->payload = dumps(ev);
        if (id->state == IT_DROPPED) {
            it->state = IT_DROPPED;
        } else if (id->state == IT_DEAD && strncmp(id->reason, "id_too_long", 11) == 0) {
            item_dead(it, id->reason, 0, "");
        } else if ((bad = cio_check_event(ev, why, sizeof(why))) != NULL) {
            item_dead(it, bad, 0, "");
        }
        json_decref(ev);
    }
}

static struct request *new_request(struct round *r) {
    struct request *g = realloc(r->reqs, (r->nreqs + 1) * sizeof(*r->reqs));
    if (g == NULL)
        abort();
    r->reqs = g;
    struct request *q = &r->reqs[r->nreqs++];
    memset(q, 0, sizeof(*q));
    q->r = r;
    return q;
}

static void add_ref(struct request *q, size_t user, size_t item) {
    void *g = realloc(q->refs, (q->nrefs + 1) * sizeof(*q->refs));
    if (g == NULL)
        abort();
    q->refs = g;
    q->refs[q->nrefs].user = user;
    q->refs[q->nrefs].item = item;
    q->nrefs++;
}

static char *url_for(const struct svc_config *cfg, const char *path) {
    size_t n = strlen(cfg->cio_track_url) + strlen(path) + 1;
    char *u = malloc(n);
    if (u == NULL)
        abort();
    snprintf(u, n, "%s%s", cfg->cio_track_url, path);
    return u;
}

/* v2: users' items packed into /api/v2/batch requests of at most sync_batch users and
 * under the 500 KB body limit. Each item is checked against the 32 KB item limit. */
static void build_v2(struct svc_sync *s, struct round *r) {
    struct request *q = NULL;
    json_t *batch = NULL;
    size_t bytes = 0, users_in = 0;
    for (size_t i = 0; i < r->nusers; i++) {
        struct ruser *ru = &r->ru[i];
        size_t before = q ? q->nrefs : 0;
        for (size_t j = 0; j < ru->nitems; j++) {
            struct item *it = &ru->items[j];
            if (it->state != IT_PENDING)
                continue;
            json_t *op;
            if (it->event < 0) {
                op = cio_op_identify(ru->u->uid, ru->attrs, r->now);
            } else {
                json_t *ev = json_loads(it->payload, 0, NULL);
                op = cio_op_event(ru->u->uid, ev);
                json_decref(ev);
            }
            char *text = dumps(op);
            size_t len = strlen(text);
            free(text);
            if (len > CIO_MAX_ITEM_BYTES) {
                item_dead(it, "item_too_large: Customer.io refuses batch items over 32 KB", 0, "");
                json_decref(op);
                continue;
            }
            if (q == NULL || bytes + len + 2 > CIO_MAX_BATCH_BYTES - 64 ||
                (users_in >= (size_t)s->cfg->sync_batch && q->nrefs == before)) {
                if (q != NULL) {
                    json_t *doc = json_object();
                    json_object_set_new(doc, "batch", batch);
                    q->body = dumps(doc);
                    q->body_len = strlen(q->body);
                    json_decref(doc);
                }
                q = new_request(r);
                q->method = "POST";
                q->url = url_for(s->cfg, "/api/v2/batch");
                batch = json_array();
                bytes = 16;
                users_in = 0;
                before = 0;
            }
            json_array_append_new(batch, op);
            bytes += len + 1;
            add_ref(q, i, j);
        }
        if (q != NULL && q->nrefs > before)
            users_in++;
    }
    if (q != NULL) {
        json_t *doc = json_object();
        json_object_set_new(doc, "batch", batch);
        q->body = dumps(doc);
        q->body_len = strlen(q->body);
        json_decref(doc);
    }
}

/* v1: one PUT /api/v1/customers/{id} per identify, one POST .../events per event. */
static void build_v1(struct svc_sync *s, struct round *r) {
    for (size_t i = 0; i < r->nusers; i++) {
        struct ruser *ru = &r->ru[i];
        char *esc = cio_path_escape(ru->u->uid);
        if (esc == NULL)
            abort();
        for (size_t j = 0; j < ru->nitems; j++) {
            struct item *it = &ru->items[j];
            if (it->state != IT_PENDING)
                continue;
            struct request *q = new_request(r);
            char path[1024];
            if (it->event < 0) {
                snprintf(path, sizeof(path), "/api/v1/customers/%s", esc);
                q->method = "PUT";
                q->body = dumps(ru->attrs);
            } else {
                snprintf(path, sizeof(path), "/api/v1/customers/%s/events", esc);
                q->method = "POST";
                q->body = strdup(it->payload);
            }
            q->url = url_for(s->cfg, path);
            q->body_len = strlen(q->body);
            add_ref(q, i, j);
        }
        free(esc);
    }
}

/*---------------------------------------------------------------------------
 * Sending
 *--------------------------------------------------------------------------*/

static int retryable(long status) {
    return status == 0 || status == 408 || status == 429 || (status >= 500 && status <= 599);
}

struct err_ctx {
    struct request *q;
    long status;
    const char *body;
};

static void on_item_error(size_t index, const char *message, void *arg) {
    struct err_ctx *c = arg;
    if (index >= c->q->nrefs)
        return;
    struct ruser *ru = &c->q->r->ru[c->q->refs[index].user];
    char reason[600];
    snprintf(reason, sizeof(reason), "rejected: %s", message);
    item_dead(&ru->items[c->q->refs[index].item], reason, c->status, c->body);
}

static void pause_delivery(const char *why) {
    pthread_mutex_lock(&reason_lock);
    int was = atomic_load(&paused);
    if (!was) {
        snprintf(pause_reason, sizeof(pause_reason), "%s", why);
        atomic_store(&paused, 1);
    }
    pthread_mutex_unlock(&reason_lock);
    if (!was) {
        svc_log_error("cio_unauthorized", "message",
                      json_string("Customer.io refused the credentials; delivery paused until "
                                  "a probe succeeds (check CIO_SITE_ID, CIO_API_KEY, CIO_REGION)"),
                      "detail", json_string(why), NULL);
    }
}

static void on_woken(long long n, void *arg) {
    (void)arg;
    if (n > 0)
        svc_log_info("cio_retries_woken", "users", json_integer(n), NULL);
}

/* Customer.io answers again after an outage or a credential pause: every user backing
 * off is due now. */
static void wake_all(struct svc_sync *s) {
    count("suppressd_cio_wakes_total",
          "Times delivery resumed after an outage or a credential pause.", "", 1);
    if (state_store_ready(s->store))
        state_outbox_wake(s->store, (int64_t)state_now_ms(), on_woken, NULL);
}

/* A send or probe that reached Customer.io (any HTTP answer but 408/429/5xx). */
static void note_reachable(struct svc_sync *s) {
    if (atomic_load(&reach) == REACHABLE)
        return;
    if (atomic_exchange(&reach, REACHABLE) == DOWN) {
        svc_log_info("cio_reachable", "message",
                     json_string("Customer.io answers again; retrying every waiting user now"),
                     NULL);
        wake_all(s);
    }
}

#define MAX_RETRY_WAIT_MS (300 * 1000LL) /* Retry-After / X-RateLimit-Reset honoured up to */

/* When a retryable answer allows the next attempt, in unix ms (0: no constraint). */
static long long retry_not_before(const struct svc_http_result *res) {
    long long now = (long long)state_now_ms(), at = 0;
    if (res->retry_after >= 0)
        at = now + res->retry_after * 1000LL;
    if (res->ratelimit_reset > 0) {
        /* Unix seconds, or (a small number) seconds from now. */
        long long reset = res->ratelimit_reset < 1000000000LL
                              ? now + res->ratelimit_reset * 1000LL
                              : res->ratelimit_reset * 1000LL;
        if (reset > at)
            at = reset;
    }
    if (at > now + MAX_RETRY_WAIT_MS)
        at = now + MAX_RETRY_WAIT_MS;
    return at;
}

static void on_response(const struct svc_http_result *res, void *arg) {
    struct request *q = arg;
    struct round *r = q->r;
    long status = res->status;
    long long not_before = 0;
    const char *outcome;

    if (status == 0 || status >= 500) {
        int was = REACHABLE;
        atomic_compare_exchange_strong(&reach, &was, SUSPECT);
    } else if (status != 408 && status != 429) {
        note_reachable(r->s);
    }
    if (status >= 200 && status < 300) {
        outcome = "sent";
        if (!r->s->cfg->cio_api_v1) {
            /* Customer.io reports per-item failures in 207s and sometimes in 200s. */
            struct err_ctx c = {q, status, res->body};
            cio_batch_errors(res->body, res->body_len, on_item_error, &c);
        }
        for (size_t i = 0; i < q->nrefs; i++) {
            struct item *it = &r->ru[q->refs[i].user].items[q->refs[i].item];
            if (it->state == IT_PENDING)
                it->state = IT_OK;
        }
    } else if (status == 401 || status == 403) {
        outcome = "unauthorized";
        char why[80];
        snprintf(why, sizeof(why), "HTTP %ld from %s", status, q->url);
        pause_delivery(why);
        for (size_t i = 0; i < q->nrefs; i++)
            r->ru[q->refs[i].user].items[q->refs[i].item].state = IT_PAUSE;
    } else if (retryable(status)) {
        outcome = status == 429 ? "rate_limited" : status == 0 ? "network_error" : "server_error";
        if (status == 0)
            svc_log_warn("cio_request_failed", "url", json_string(q->url),
                         "error", json_string(res->error ? res->error : "unknown"), NULL);
        not_before = retry_not_before(res);
        for (size_t i = 0; i < q->nrefs; i++) {
            struct item *it = &r->ru[q->refs[i].user].items[q->refs[i].item];
            it->state = IT_RETRY;
            it->status = status;
            it->not_before_ms = not_before;
        }
    } else {
        outcome = "rejected";
        char reason[64];
        snprintf(reason, sizeof(reason), "rejected: HTTP %ld", status);
        for (size_t i = 0; i < q->nrefs; i++)
            item_dead(&r->ru[q->refs[i].user].items[q->refs[i].item], reason, status, res->body);
    }
    char labels[64];
    snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome);
    count(M_REQ, M_REQ_HELP, labels, 1);
    if (--r->pending == 0)
        round_finish(r);
}

static void send_request(struct request *q);

static void on_rate_wait(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    send_request(arg);
}

/* Gives the request up without sending it: its lease runs out too soon (see the file
 * comment). */
static void lose_request(struct request *q) {
    struct round *r = q->r;
    for (size_t i = 0; i < q->nrefs; i++)
        r->ru[q->refs[i].user].items[q->refs[i].item].state = IT_LOST;
    count(M_REQ, M_REQ_HELP, "outcome=\"lease_expired\"", 1);
    if (--r->pending == 0)
        round_finish(r);
}

/* The last moment (monotonic ms) a request of round r may go out. */
static long long send_deadline(const struct round *r) {
    const struct svc_config *cfg = r->s->cfg;
    long long guard = (long long)cfg->cio_timeout_ms + 1000;
    if (guard > cfg->sync_lease_ms / 2)
        guard = cfg->sync_lease_ms / 2;
    return r->lease_end - guard;
}

static void on_rate(long wait_ms, void *arg) {
    struct request *q = arg;
    struct round *r = q->r;
    struct svc_sync *s = r->s;
    if (wait_ms >= 0 && mono_ms() + wait_ms > send_deadline(r)) {
        lose_request(q);
        return;
    }
    if (wait_ms < 0) {
        /* Redis is gone: the lease will run out and the work be retaken. */
        for (size_t i = 0; i < q->nrefs; i++)
            r->ru[q->refs[i].user].items[q->refs[i].item].state = IT_RETRY;
        if (--r->pending == 0)
            round_finish(r);
        return;
    }
    if (wait_ms > 0) {
        count("suppressd_cio_rate_limit_waits_total",
              "Times a request waited for the shared CIO_RATE_LIMIT budget.", "", 1);
        if (q->wait_ev == NULL)
            q->wait_ev = evtimer_new(s->base, on_rate_wait, q);
        struct timeval tv = {wait_ms / 1000, (wait_ms % 1000) * 1000};
        evtimer_add(q->wait_ev, &tv);
        return;
    }
    const struct svc_config *cfg = s->cfg;
    const char *headers[] = {"Content-Type: application/json", "Accept: application/json", NULL};
    char userpwd[512];
    snprintf(userpwd, sizeof(userpwd), "%s:%s", cfg->cio_site_id, cfg->cio_api_key);
    struct svc_http_request rq = {q->method, q->url, q->body, q->body_len, headers, userpwd,
                                  cfg->cio_timeout_ms};
    if (svc_curl_start(s->curl, &rq, on_response, q) < 0) {
        struct svc_http_result res = {0};
        res.error = "cannot start request";
        res.body = "";
        res.retry_after = -1;
        on_response(&res, q);
    }
}

static void send_request(struct request *q) {
    struct svc_sync *s = q->r->s;
    char member[64];
    snprintf(member, sizeof(member), "%d-%d-%lu-%llu", (int)getpid(), s->index, ++s->seq,
             (unsigned long long)state_now_ms());
    if (state_outbox_rate(s->store, "customerio", s->cfg->cio_rate_limit, member, on_rate, q) < 0)
        on_rate(-1, q);
}

/* Dry run: log the request as one JSON line and count its items as sent. */
static void dry_send(struct request *q) {
    json_t *body = json_loadb(q->body, q->body_len, 0, NULL);
    svc_log_info("cio_dry_run", "method", json_string(q->method), "url", json_string(q->url),
                 "items", json_integer((json_int_t)q->nrefs),
                 "body", q->body_len <= 16384 && body ? json_incref(body)
                                                      : json_sprintf("(%zu bytes)", q->body_len),
                 NULL);
    json_decref(body);
    count(M_REQ, M_REQ_HELP, "outcome=\"dry_run\"", 1);
    for (size_t i = 0; i < q->nrefs; i++)
        q->r->ru[q->refs[i].user].items[q->refs[i].item].state = IT_OK;
}

/*---------------------------------------------------------------------------
 * Reporting back
 *--------------------------------------------------------------------------*/

static void on_acked(const char *const *statuses, size_t n, void *arg);

static int item_finished(const struct item *it) {
    return it->state == IT_OK || it->state == IT_DEAD || it->state == IT_DROPPED;
}

static void on_dead_lettered(int ok, void *arg) {
    struct round *r = arg;
    if (!ok) {
        /* Acking now would drop items that are in no dead letter: report nothing, and let
         * the lease run out so the whole round is redone. */
        svc_log_error("dead_letter_failed", "message",
                      json_string("could not record dead letters; the items stay queued"), NULL);
        struct svc_sync *s = r->s;
        round_free(r);
        schedule(s, IDLE_MS);
        return;
    }
    r->phase = 2;
    round_finish(r);
}

/* Phase 1: dead letters. Phase 2: acks. Phase 3: exhausted users, then done. */
static void round_finish(struct round *r) {
    struct svc_sync *s = r->s;
    if (r->phase == 0) {
        r->phase = 1;
        size_t n = 0;
        for (size_t i = 0; i < r->nusers; i++)
            for (size_t j = 0; j < r->ru[i].nitems; j++)
                n += r->ru[i].items[j].state == IT_DEAD;
        if (n > 0) {
            struct state_dead_letter *dl = calloc(n, sizeof(*dl));
            if (dl == NULL)
                abort();
            size_t k = 0;
            for (size_t i = 0; i < r->nusers; i++) {
                struct ruser *ru = &r->ru[i];
                for (size_t j = 0; j < ru->nitems; j++) {
                    struct item *it = &ru->items[j];
                    if (it->state != IT_DEAD)
                        continue;
                    dl[k].destination = "customerio";
                    dl[k].uid = ru->u->uid;
                    dl[k].kind = it->event < 0 ? "identify" : "event";
                    dl[k].reason = it->reason;
                    dl[k].status = it->status;
                    dl[k].response = it->response;
                    dl[k].payload = it->payload;
                    dl[k].record = it->event < 0 ? "" : ru->u->events[it->event];
                    k++;
                }
            }
            count(M_ITEM, M_ITEM_HELP, "outcome=\"dead_lettered\"", n);
            int rc = state_outbox_dead_letter(s->store, dl, n, on_dead_lettered, r);
            free(dl);
            if (rc == 0)
                return;
            /* Redis is down: keep the items queued (no ack) and let the lease run out. */
            svc_log_error("dead_letter_failed", NULL);
            round_free(r);
            schedule(s, IDLE_MS);
            return;
        }
        r->phase = 2;
    }
    if (r->phase == 2) {
        struct state_outbox_ack *acks = calloc(r->nusers, sizeof(*acks));
        char ***fin = calloc(r->nusers, sizeof(char **));
        if (acks == NULL || fin == NULL)
            abort();
        size_t sent = 0, retried = 0;
        for (size_t i = 0; i < r->nusers; i++) {
            struct ruser *ru = &r->ru[i];
            struct state_outbox_ack *a = &acks[i];
            fin[i] = calloc(ru->nitems, sizeof(char *));
            a->uid = ru->u->uid;
            a->finished = fin[i];
            a->give_up_ms = s->cfg->sync_give_up_s * 1000;
            a->window_end_ms = cio_next_window_end(&ru->u->user, &s->cfg->rules, r->now) * 1000;
            int pause_only = 1, lost = 0;
            for (size_t j = 0; j < ru->nitems; j++) {
                struct item *it = &ru->items[j];
                lost |= it->state == IT_LOST;
                if (it->state == IT_OK)
                    sent++;
                if (it->state == IT_RETRY || it->state == IT_PAUSE) {
                    a->retry = 1;
                    retried++;
                    pause_only &= it->state == IT_PAUSE;
                    if (it->not_before_ms > a->not_before_ms)
                        a->not_before_ms = it->not_before_ms;
                }
                if (it->event >= 0 && item_finished(it))
                    fin[i][a->nfinished++] = ru->u->events[it->event];
            }
            if (ru->exhausted) {
                a->retry = 0;
                a->sv = "*";
            } else if (!a->retry) {
                a->sv = item_finished(&ru->items[0]) ? ru->u->sv : NULL;
            }
            if (a->retry && pause_only) {
                a->paused = 1;
                a->not_before_ms = (long long)state_now_ms() + s->cfg->sync_probe_ms;
            }
            if (lost && !ru->exhausted) {
                /* Part of its work was not sent (its lease ran out): only the finished
                 * events are reported; the lease running out makes it due again. */
                a->lost = 1;
                a->retry = 0;
                a->sv = NULL;
            }
        }
        if (!r->counted) {
            count(M_ITEM, M_ITEM_HELP, "outcome=\"sent\"", sent);
            count(M_ITEM, M_ITEM_HELP, "outcome=\"retried\"", retried);
            r->counted = 1;
        }
        int rc = state_outbox_ack(s->store, acks, r->nusers, (int64_t)state_now_ms(), on_acked, r);
        for (size_t i = 0; i < r->nusers; i++)
            free(fin[i]);
        free(fin);
        free(acks);
        if (rc < 0) {
            round_free(r);
            schedule(s, IDLE_MS);
        }
        return;
    }
    round_free(r);
    schedule(s, 0);
}

static void on_acked(const char *const *statuses, size_t n, void *arg) {
    struct round *r = arg;
    struct svc_sync *s = r->s;
    if (statuses == NULL || r->final_pass) {
        round_free(r);
        schedule(s, statuses == NULL ? IDLE_MS : 0);
        return;
    }
    /* Users whose retries ran out: their unfinished items become dead letters, then the
     * user is acknowledged as done. */
    size_t exhausted = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(statuses[i], "exhausted") != 0)
            continue;
        struct ruser *ru = &r->ru[i];
        ru->exhausted = 1;
        exhausted++;
        for (size_t j = 0; j < ru->nitems; j++) {
            if (!item_finished(&ru->items[j]))
                item_dead(&ru->items[j], "retries_exhausted", ru->items[j].status, "");
            else if (ru->items[j].state == IT_DEAD)
                ru->items[j].state = IT_OK; /* dead-lettered already: don't repeat it */
        }
        svc_log_warn("cio_retries_exhausted", "user_id", json_string(ru->u->uid), NULL);
    }
    if (exhausted == 0) {
        round_free(r);
        schedule(s, 0);
        return;
    }
    /* Keep only the exhausted users in the round and run phases 1 and 2 again for them. */
    for (size_t i = 0; i < r->nusers; i++) {
        if (r->ru[i].exhausted)
            continue;
        for (size_t j = 0; j < r->ru[i].nitems; j++)
            if (r->ru[i].items[j].state == IT_DEAD)
                r->ru[i].items[j].state = IT_OK;
    }
    size_t k = 0;
    for (size_t i = 0; i < r->nusers; i++) {
        if (r->ru[i].exhausted) {
            if (k != i) {
                struct ruser tmp = r->ru[k];
                struct state_outbox_user tu = r->users[k];
                r->ru[k] = r->ru[i];
                r->users[k] = r->users[i];
                r->ru[i] = tmp;
                r->users[i] = tu;
                r->ru[k].u = &r->users[k];
                r->ru[i].u = &r->users[i];
            }
            k++;
        }
    }
    /* The rest stay allocated (freed with the round) but are no longer reported. */
    r->nusers = k;
    r->phase = 0;
    r->final_pass = 1;
    round_finish(r);
}

/*---------------------------------------------------------------------------
 * Leasing
 *--------------------------------------------------------------------------*/

static void on_read(struct state_outbox_user *users, size_t n, void *arg) {
    struct svc_sync *s = arg;
    s->leasing = 0;
    if (users == NULL) {
        schedule(s, IDLE_MS);
        return;
    }
    struct round *r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort();
    r->s = s;
    r->users = users;
    r->nall = n;
    r->nusers = n;
    r->now = (int64_t)time(NULL);
    r->lease_end = s->lease_start + s->cfg->sync_lease_ms;
    r->ru = calloc(n, sizeof(*r->ru));
    if (r->ru == NULL)
        abort();
    r->next = s->head;
    if (s->head)
        s->head->prev = r;
    s->head = r;
    s->rounds++;
    for (size_t i = 0; i < n; i++)
        prepare_user(s, r, i);
    if (s->cfg->cio_api_v1)
        build_v1(s, r);
    else
        build_v2(s, r);
    r->pending = r->nreqs;
    if (r->nreqs == 0) {
        round_finish(r);
    } else if (s->dry) {
        r->pending = 0;
        for (size_t i = 0; i < r->nreqs; i++)
            dry_send(&r->reqs[i]);
        round_finish(r);
    } else {
        for (size_t i = 0; i < r->nreqs; i++)
            send_request(&r->reqs[i]);
    }
    schedule(s, 0); /* more rounds may start while this one is in flight */
}

static void on_leased(char **uids, size_t n, void *arg) {
    struct svc_sync *s = arg;
    if (uids == NULL || n == 0) {
        s->leasing = 0;
        s->empty_partitions += PARTITIONS_PER_ROUND;
        /* Keep walking the partitions until a full turn found nothing, then rest. */
        schedule(s, uids != NULL && s->empty_partitions < STATE_PARTITIONS ? 0 : IDLE_MS);
        return;
    }
    s->empty_partitions = 0;
    if (state_outbox_read(s->store, uids, n, MAX_EVENTS_PER_USER, on_read, s) < 0) {
        s->leasing = 0;
        schedule(s, IDLE_MS);
    }
}

static void on_probe(const struct svc_http_result *res, void *arg) {
    struct svc_sync *s = arg;
    atomic_store(&probe_inflight, 0);
    if (s->stopping)
        return; /* aborted at shutdown: says nothing about Customer.io */
    long status = res->status;
    if (status == 0 || status == 408 || status == 429 || status >= 500) {
        if (atomic_exchange(&reach, DOWN) != DOWN)
            svc_log_warn("cio_unreachable", "message",
                         json_string("Customer.io does not answer; sends back off and resume "
                                     "as soon as a probe gets through"),
                         "status", json_integer(status),
                         "error", json_string(res->error ? res->error : ""), NULL);
        return;
    }
    int was_down = atomic_load(&reach) == DOWN;
    if (status >= 200 && status < 300 && atomic_load(&paused)) {
        atomic_store(&paused, 0);
        svc_log_info("cio_resumed", "message",
                     json_string("Customer.io accepted the credentials; delivery resumed"), NULL);
        if (!was_down)
            wake_all(s);
    }
    note_reachable(s);
}

/* While paused or while Customer.io seems down, one loop at a time asks Customer.io
 * whether it answers and accepts the credentials now. */
static void on_probe_slot(long wait_ms, void *arg) {
    struct svc_sync *s = arg;
    if (wait_ms != 0 || s->stopping) {
        /* No slot now (or no Redis): the next tick asks again. */
        atomic_store(&next_probe_ms, 0);
        atomic_store(&probe_inflight, 0);
        return;
    }
    char *url = url_for(s->cfg, "/api/v1/accounts/region");
    char userpwd[512];
    snprintf(userpwd, sizeof(userpwd), "%s:%s", s->cfg->cio_site_id, s->cfg->cio_api_key);
    struct svc_http_request rq = {"GET", url, NULL, 0, NULL, userpwd, s->cfg->cio_timeout_ms};
    if (svc_curl_start(s->curl, &rq, on_probe, s) < 0)
        atomic_store(&probe_inflight, 0);
    free(url);
}

/* A probe is a request to Customer.io like any other: it takes a slot of the shared
 * CIO_RATE_LIMIT, so probes and the batches that follow never exceed it together. */
static void maybe_probe(struct svc_sync *s) {
    long long now = mono_ms();
    if (now < atomic_load(&next_probe_ms) || atomic_exchange(&probe_inflight, 1))
        return;
    atomic_store(&next_probe_ms, now + s->cfg->sync_probe_ms);
    char member[64];
    snprintf(member, sizeof(member), "probe-%d-%d-%lu-%llu", (int)getpid(), s->index, ++s->seq,
             (unsigned long long)state_now_ms());
    if (state_outbox_rate(s->store, "customerio", s->cfg->cio_rate_limit, member, on_probe_slot,
                          s) < 0)
        atomic_store(&probe_inflight, 0);
}

/* Users leased per partition. v2 sends up to SUPPRESS_SYNC_BATCH users per request; v1
 * sends a request per item (two or more per user), so there a round takes no more users
 * than the rate limit lets it send within about half its lease. */
static size_t lease_max(const struct svc_config *cfg) {
    long long n = cfg->sync_batch;
    if (cfg->cio_api_v1 && cfg->cio_site_id != NULL) {
        long long budget = (long long)cfg->cio_rate_limit * cfg->sync_lease_ms / 1000 / 2;
        long long per = budget / (PARTITIONS_PER_ROUND * 2);
        if (per < n)
            n = per < 1 ? 1 : per;
    }
    return (size_t)n;
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    struct svc_sync *s = arg;
    (void)fd;
    (void)what;
    if (s->stopping || s->leasing || s->rounds >= MAX_ROUNDS)
        return;
    if (atomic_load(&paused)) {
        maybe_probe(s);
        schedule(s, IDLE_MS);
        return;
    }
    if (atomic_load(&reach) != REACHABLE && !s->dry)
        maybe_probe(s); /* and go on: users whose backoff ended still try themselves */
    if (!state_store_ready(s->store)) {
        schedule(s, IDLE_MS);
        return;
    }
    unsigned first = s->next_partition;
    s->next_partition = (s->next_partition + PARTITIONS_PER_ROUND) % STATE_PARTITIONS;
    s->leasing = 1;
    s->lease_start = mono_ms();
    if (state_outbox_lease(s->store, first, PARTITIONS_PER_ROUND, (int64_t)state_now_ms(),
                           s->cfg->sync_lease_ms, lease_max(s->cfg), on_leased, s) < 0) {
        s->leasing = 0;
        schedule(s, IDLE_MS);
    }
}

static void schedule(struct svc_sync *s, int ms) {
    if (s->stopping)
        return;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(s->tick, &tv);
}

static void on_stats_tick(evutil_socket_t fd, short what, void *arg) {
    struct svc_sync *s = arg;
    (void)fd;
    (void)what;
    if (!s->stopping && state_store_ready(s->store))
        state_outbox_stats(s->store, "customerio", svc_metrics_queue_stats, (void *)(uintptr_t)"customerio");
}

struct svc_sync *svc_sync_new(struct event_base *base, struct state_store *store,
                              struct svc_curl *curl, const struct svc_config *cfg, int index) {
    struct svc_sync *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->base = base;
    s->store = store;
    s->curl = curl;
    s->cfg = cfg;
    s->index = index;
    s->dry = cfg->cio_site_id == NULL;
    atomic_store(&dry_run, s->dry);
    /* Loops start at different partitions so they rarely lease from the same one. */
    s->next_partition = (unsigned)(index * 23) % STATE_PARTITIONS;
    s->tick = evtimer_new(base, on_tick, s);
    if (s->tick == NULL) {
        free(s);
        return NULL;
    }
    if (index == 0) {
        s->stats_ev = event_new(base, -1, EV_PERSIST, on_stats_tick, s);
        struct timeval five = {5, 0};
        if (s->stats_ev != NULL)
            event_add(s->stats_ev, &five);
    }
    schedule(s, 100);
    return s;
}

void svc_sync_stop(struct svc_sync *s) {
    if (s == NULL)
        return;
    s->stopping = 1;
    evtimer_del(s->tick);
    if (s->stats_ev)
        event_del(s->stats_ev);
}

int svc_sync_idle(const struct svc_sync *s) {
    return s == NULL || (s->rounds == 0 && !s->leasing);
}

void svc_sync_free(struct svc_sync *s) {
    if (s == NULL)
        return;
    while (s->head != NULL)
        round_free(s->head);
    event_free(s->tick);
    if (s->stats_ev)
        event_free(s->stats_ev);
    free(s);
}
