/* svc_backfill: open tickets from Intercom's search API into state. See svc_backfill.h. */
#include "svc/svc_backfill.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/api_intercom.h"
#include "state/state_apply.h"
#include "state/state_outbox.h"
#include "state/state_ulid.h"
#include "svc/svc_intercom.h"
#include "svc/svc_log.h"
#include "svc/svc_metrics.h"

#define STATE_KEY "sd:{bf}:state"
#define LOCK_KEY "sd:{bf}:lock"
#define LOCK_MS 120000
#define PER_PAGE 150            /* Intercom's largest search page */
#define MAX_FAILURES 12         /* consecutive failed attempts of one page (~10 minutes) */

enum phase { PH_NO_TOKEN, PH_CONNECT, PH_LOCK, PH_READ, PH_PAGE, PH_APPLY, PH_SAVE, PH_FINISH };

struct svc_backfill {
    struct event_base *base;
    struct state_store *store;
    struct svc_curl *curl;
    const struct svc_config *cfg;
    svc_backfill_fn *fn;
    void *arg;
    struct svc_backfill **slot;
    int restart;
    int started;
    enum phase phase;
    int kind;                    /* 0 conversations, 1 tickets */
    char *cursor;                /* starting_after of the next page, NULL for the first */
    char *next_cursor;
    int failures;
    int waits;
    long long pages, records, skipped;
    char owner[64];
    struct event *timer;
    int in_curl;
    int pending_redis;           /* Redis replies this run still waits for */
    int dead;                    /* freed by the owner while replies were pending */

    /* the page being applied */
    size_t napply, applied;
    int apply_failed;
    struct api_intercom_doc *docs;
};

static const char *const KIND_NAME[] = {"conversations", "tickets"};

static void step(struct svc_backfill *b);

static void release(struct svc_backfill *b) {
    if (b->docs != NULL) {
        for (size_t i = 0; i < b->napply; i++)
            api_intercom_free(&b->docs[i]);
        free(b->docs);
        b->docs = NULL;
    }
    b->napply = b->applied = 0;
}

static void destroy(struct svc_backfill *b) {
    if (b->slot != NULL && *b->slot == b)
        *b->slot = NULL;
    release(b);
    if (b->timer)
        event_free(b->timer);
    free(b->cursor);
    free(b->next_cursor);
    free(b);
}

/* Gives the lock back if this run still holds it, so the next run needn't wait for it
 * to expire. Fire and forget: at worst the lock expires on its own (LOCK_MS). */
static void unlock(struct svc_backfill *b) {
    static const char script[] =
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
        "return 0";
    const char *argv[] = {"EVAL", script, "1", LOCK_KEY, b->owner};
    state_store_command(b->store, NULL, NULL, 5, argv, NULL);
}

void svc_backfill_free(struct svc_backfill *b) {
    if (b == NULL)
        return;
    if (b->started) {
        const char *argv[] = {"HSET", STATE_KEY, "status", "interrupted"};
        state_store_command(b->store, NULL, NULL, 4, argv, NULL);
        unlock(b);
    }
    if (b->slot != NULL && *b->slot == b)
        *b->slot = NULL;
    b->slot = NULL;
    /* The owner learns it ended (an admin request still waiting gets its answer). */
    svc_backfill_fn *fn = b->fn;
    b->fn = NULL;
    if (fn != NULL)
        fn(SVC_BACKFILL_FAILED, "interrupted: the backfill was stopped", b->arg);
    if (b->pending_redis > 0 || b->in_curl || b->napply > b->applied) {
        /* Replies are still due: they find the run dead and free it. */
        b->dead = 1;
        if (b->timer)
            evtimer_del(b->timer);
        return;
    }
    destroy(b);
}

static void finish(struct svc_backfill *b, enum svc_backfill_event ev, const char *message) {
    svc_metrics_gauge_set("suppressd_backfill_running", "1 while a backfill runs in this process.",
                          "", 0);
    if (ev == SVC_BACKFILL_DONE)
        svc_log_info("backfill_done", "pages", json_integer(b->pages),
                     "records", json_integer(b->records), "skipped", json_integer(b->skipped),
                     NULL);
    else
        svc_log_error("backfill_failed", "reason", json_string(message),
                      "pages", json_integer(b->pages), "records", json_integer(b->records), NULL);
    if (b->fn != NULL)
        b->fn(ev, message, b->arg);
    destroy(b);
}

/* Releases the lock (when held) and ends the run. */
static void fail(struct svc_backfill *b, const char *message) {
    char msg[300];
    snprintf(msg, sizeof(msg), "%s", message);
    if (b->started) {
        const char *argv[] = {"HSET", STATE_KEY, "status", "failed", "error", msg};
        state_store_command(b->store, NULL, NULL, 6, argv, NULL);
        unlock(b);
        b->started = 0;
    }
    finish(b, SVC_BACKFILL_FAILED, msg);
}

static void retry_later(struct svc_backfill *b, long ms, const char *why) {
    if (++b->failures > MAX_FAILURES) {
        char msg[300];
        snprintf(msg, sizeof(msg), "giving up after %d attempts: %s", MAX_FAILURES, why);
        fail(b, msg);
        return;
    }
    svc_log_warn("backfill_retry", "kind", json_string(KIND_NAME[b->kind]),
                 "reason", json_string(why), "in_ms", json_integer(ms), NULL);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(b->timer, &tv);
}

static long backoff_ms(const struct svc_backfill *b) {
    long ms = 500L << (b->failures < 7 ? b->failures : 7);
    return ms > 60000 ? 60000 : ms;
}

/*---------------------------------------------------------------------------
 * Redis steps
 *--------------------------------------------------------------------------*/

/* Every Redis reply passes here first: a run cancelled meanwhile is freed instead. */
static int alive(struct svc_backfill *b) {
    b->pending_redis--;
    if (b->dead) {
        if (b->pending_redis == 0 && !b->in_curl && b->napply <= b->applied)
            destroy(b);
        return 0;
    }
    return 1;
}

static int command(struct svc_backfill *b, state_reply_fn *fn, int argc, const char **argv) {
    if (state_store_command(b->store, fn, b, argc, argv, NULL) < 0)
        return -1;
    b->pending_redis++;
    return 0;
}

static void on_locked(struct state_store *st, redisReply *r, void *arg) {
    struct svc_backfill *b = arg;
    (void)st;
    if (!alive(b))
        return;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        fail(b, "Redis failed while taking the backfill lock");
        return;
    }
    if (r->type == REDIS_REPLY_NIL) {
        finish(b, SVC_BACKFILL_FAILED, "another backfill is running (sd:{bf}:lock is held)");
        return;
    }
    b->started = 1;
    b->phase = PH_READ;
    step(b);
}

static void on_state(struct state_store *st, redisReply *r, void *arg) {
    struct svc_backfill *b = arg;
    (void)st;
    if (!alive(b))
        return;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        fail(b, "Redis failed while reading the backfill progress");
        return;
    }
    int conv_done = 0;
    const char *cursor[2] = {NULL, NULL};
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const char *k = r->element[i]->str, *v = r->element[i + 1]->str;
        if (strcmp(k, "conversations_done") == 0)
            conv_done = 1;
        else if (strcmp(k, "conversations_cursor") == 0)
            cursor[0] = v;
        else if (strcmp(k, "tickets_cursor") == 0)
            cursor[1] = v;
        else if (strcmp(k, "pages") == 0 && !b->restart)
            b->pages = strtoll(v, NULL, 10);
        else if (strcmp(k, "records") == 0 && !b->restart)
            b->records = strtoll(v, NULL, 10);
    }
    if (b->restart) {
        conv_done = 0;
        cursor[0] = cursor[1] = NULL;
    }
    b->kind = conv_done ? 1 : 0;
    b->cursor = cursor[b->kind] ? strdup(cursor[b->kind]) : NULL;
    char now[24], pages[24], records[24];
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
    snprintf(pages, sizeof(pages), "%lld", b->pages);
    snprintf(records, sizeof(records), "%lld", b->records);
    if (b->cursor != NULL || conv_done)
        svc_log_info("backfill_resumed", "kind", json_string(KIND_NAME[b->kind]),
                     "cursor", json_string(b->cursor ? b->cursor : ""), NULL);
    else
        svc_log_info("backfill_started", NULL);
    if (b->restart) {
        const char *del[] = {"DEL", STATE_KEY};
        state_store_command(b->store, NULL, NULL, 2, del, NULL);
    }
    const char *argv[] = {"HSET", STATE_KEY, "status", "running", "updated_at", now,
                          "pages", pages, "records", records, "owner", b->owner};
    state_store_command(b->store, NULL, NULL, 12, argv, NULL);
    if (b->fn != NULL)
        b->fn(SVC_BACKFILL_STARTED, "started", b->arg);
    svc_metrics_gauge_set("suppressd_backfill_running", "1 while a backfill runs in this process.",
                          "", 1);
    b->phase = PH_PAGE;
    step(b);
}

static void on_saved(struct state_store *st, redisReply *r, void *arg) {
    struct svc_backfill *b = arg;
    (void)st;
    if (!alive(b))
        return;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        retry_later(b, backoff_ms(b), "Redis failed while saving the cursor");
        b->phase = PH_SAVE;
        return;
    }
    b->failures = 0;
    free(b->cursor);
    b->cursor = b->next_cursor;
    b->next_cursor = NULL;
    if (b->cursor == NULL) {
        if (b->kind == 0) {
            b->kind = 1;
            b->phase = PH_PAGE;
        } else {
            b->phase = PH_FINISH;
        }
    } else {
        b->phase = PH_PAGE;
    }
    step(b);
}

static void on_finished(struct state_store *st, redisReply *r, void *arg) {
    struct svc_backfill *b = arg;
    (void)st;
    if (!alive(b))
        return;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        retry_later(b, backoff_ms(b), "Redis failed while recording completion");
        return;
    }
    finish(b, SVC_BACKFILL_DONE, "done");
}


/*---------------------------------------------------------------------------
 * Pages
 *--------------------------------------------------------------------------*/

static void on_object_applied(enum state_apply_result res, void *arg) {
    struct svc_backfill *b = arg;
    b->applied++;
    if (res == STATE_APPLY_FAILED)
        b->apply_failed = 1;
    if (b->applied < b->napply)
        return;
    if (b->dead) {
        if (b->pending_redis == 0 && !b->in_curl)
            destroy(b);
        return;
    }
    int failed = b->apply_failed;
    release(b);
    if (failed) {
        /* Applying is idempotent: the whole page is simply read and applied again. */
        free(b->next_cursor);
        b->next_cursor = NULL;
        b->phase = PH_PAGE;
        retry_later(b, backoff_ms(b), "Redis failed while recording a page");
        return;
    }
    b->phase = PH_SAVE;
    step(b);
}

static void apply_page(struct svc_backfill *b, const json_t *list) {
    const struct svc_config *cfg = b->cfg;
    struct api_intercom_opts opts = {(const char *const *)(const void *)cfg->churn_tags,
                                     cfg->nchurn_tags, NULL, 0};
    size_t n = json_array_size(list);
    b->docs = calloc(n ? n : 1, sizeof(*b->docs));
    if (b->docs == NULL)
        abort();
    b->napply = 0;
    b->applied = 0;
    b->apply_failed = 0;
    size_t ok = 0;
    char err[256];
    for (size_t i = 0; i < n; i++) {
        struct api_intercom_doc *d = &b->docs[b->napply];
        if (api_intercom_parse_object(d, json_array_get(list, i), "backfill", &opts, err,
                                      sizeof(err)) < 0 ||
            d->chg.kind != STATE_CHANGE_TICKET) {
            api_intercom_free(d);
            memset(d, 0, sizeof(*d));
            b->skipped++;
            svc_log_warn("backfill_skipped", "kind", json_string(KIND_NAME[b->kind]),
                         "reason", json_string(err), NULL);
            continue;
        }
        b->napply++;
        ok++;
    }
    b->records += (long long)ok;
    svc_metrics_counter_add("suppressd_backfill_records_total",
                            "Open conversations and tickets recorded by backfills.",
                            b->kind ? "kind=\"tickets\"" : "kind=\"conversations\"", ok);
    if (b->napply == 0) {
        release(b);
        b->phase = PH_SAVE;
        step(b);
        return;
    }
    /* Count them all before starting any: an apply may finish synchronously. */
    size_t total = b->napply;
    struct state_apply_opts o;
    svc_intercom_apply_opts(cfg, &o);
    for (size_t i = 0; i < total; i++) {
        if (state_apply(b->store, &b->docs[i].chg, &o, on_object_applied, b) < 0) {
            b->apply_failed = 1;
            b->applied++;
        }
    }
    if (b->applied == b->napply) {
        /* None could start (the store is down): the callback never ran. */
        b->applied--;
        on_object_applied(STATE_APPLIED, b);
    }
}

static void on_page(const struct svc_http_result *res, void *arg) {
    struct svc_backfill *b = arg;
    b->in_curl = 0;
    if (b->dead) {
        if (b->pending_redis == 0)
            destroy(b);
        return;
    }
    long st = res->status;
    if (st == 401 || st == 403) {
        fail(b, "Intercom refused the access token (check INTERCOM_ACCESS_TOKEN)");
        return;
    }
    if (st == 429) {
        long long now = (long long)time(NULL);
        long ms = res->ratelimit_reset > now ? (long)(res->ratelimit_reset - now) * 1000 + 100
                  : res->retry_after >= 0 ? res->retry_after * 1000 : 10000;
        svc_log_warn("backfill_rate_limited", "wait_ms", json_integer(ms), NULL);
        b->phase = PH_PAGE;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        evtimer_add(b->timer, &tv);
        return;
    }
    if (st == 0 || st == 408 || st >= 500) {
        b->phase = PH_PAGE;
        retry_later(b, backoff_ms(b), st == 0 ? (res->error ? res->error : "network error")
                                              : "Intercom answered a server error");
        return;
    }
    if (st < 200 || st >= 300) {
        char msg[300];
        snprintf(msg, sizeof(msg), "Intercom answered HTTP %ld to the search: %.200s", st,
                 res->body);
        fail(b, msg);
        return;
    }
    json_t *doc = json_loadb(res->body, res->body_len, 0, NULL);
    const json_t *list = json_object_get(doc, KIND_NAME[b->kind]);
    if (!json_is_array(list)) {
        json_decref(doc);
        fail(b, "the search answer has no list of objects");
        return;
    }
    const json_t *next = json_object_get(json_object_get(json_object_get(doc, "pages"), "next"),
                                         "starting_after");
    free(b->next_cursor);
    b->next_cursor = json_is_string(next) && json_string_length(next) > 0
                         ? strdup(json_string_value(next)) : NULL;
    b->pages++;
    svc_metrics_counter_add("suppressd_backfill_pages_total", "Search pages read by backfills.",
                            b->kind ? "kind=\"tickets\"" : "kind=\"conversations\"", 1);
    svc_log_info("backfill_page", "kind", json_string(KIND_NAME[b->kind]),
                 "page", json_integer(b->pages), "objects", json_integer((json_int_t)json_array_size(list)),
                 "records", json_integer(b->records + (long long)json_array_size(list)),
                 "more", json_boolean(b->next_cursor != NULL), NULL);
    b->phase = PH_APPLY;
    apply_page(b, list);
    json_decref(doc);
}

static void on_rate(long wait_ms, void *arg) {
    struct svc_backfill *b = arg;
    if (!alive(b))
        return;
    if (wait_ms < 0) {
        retry_later(b, backoff_ms(b), "Redis failed while taking a rate-limit slot");
        return;
    }
    if (wait_ms > 0) {
        struct timeval tv = {wait_ms / 1000, (wait_ms % 1000) * 1000};
        evtimer_add(b->timer, &tv);
        return;
    }
    json_t *body = json_object(), *query = json_object(), *pag = json_object();
    char url[1024];
    if (b->kind == 0) {
        json_object_set_new(query, "field", json_string("state"));
        json_object_set_new(query, "operator", json_string("IN"));
        json_object_set_new(query, "value", json_pack("[ss]", "open", "snoozed"));
        snprintf(url, sizeof(url), "%s/conversations/search", b->cfg->intercom_api_url);
    } else {
        json_object_set_new(query, "field", json_string("state"));
        json_object_set_new(query, "operator", json_string("!="));
        json_object_set_new(query, "value", json_string("resolved"));
        snprintf(url, sizeof(url), "%s/tickets/search", b->cfg->intercom_api_url);
    }
    json_object_set_new(pag, "per_page", json_integer(PER_PAGE));
    if (b->cursor != NULL)
        json_object_set_new(pag, "starting_after", json_string(b->cursor));
    json_object_set_new(body, "query", query);
    json_object_set_new(body, "pagination", pag);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct svc_http_request rq = {"POST", url, text, strlen(text),
                                  svc_intercom_headers(b->cfg), NULL, b->cfg->intercom_timeout_ms};
    b->in_curl = 1;
    int rc = svc_curl_start(b->curl, &rq, on_page, b);
    free(text);
    if (rc < 0) {
        b->in_curl = 0;
        retry_later(b, backoff_ms(b), "cannot start the request");
    }
}

/*---------------------------------------------------------------------------
 * Driver
 *--------------------------------------------------------------------------*/

static void step(struct svc_backfill *b) {
    char member[80], now[24];
    switch (b->phase) {
    case PH_NO_TOKEN:
        finish(b, SVC_BACKFILL_FAILED, "INTERCOM_ACCESS_TOKEN is not set: nothing to read from");
        return;
    case PH_CONNECT:
        if (!state_store_ready(b->store)) {
            if (++b->waits > 200) { /* 10 s */
                finish(b, SVC_BACKFILL_FAILED, "Redis is not reachable");
                return;
            }
            struct timeval tv = {0, 50000};
            evtimer_add(b->timer, &tv);
            return;
        }
        b->phase = PH_LOCK;
        /* fall through */
    case PH_LOCK: {
        const char *argv[] = {"SET", LOCK_KEY, b->owner, "NX", "PX", "120000"};
        if (command(b, on_locked, 6, argv) < 0)
            finish(b, SVC_BACKFILL_FAILED, "Redis is not reachable");
        return;
    }
    case PH_READ: {
        const char *argv[] = {"HGETALL", STATE_KEY};
        if (command(b, on_state, 2, argv) < 0)
            fail(b, "Redis is not reachable");
        return;
    }
    case PH_PAGE: {
        /* Keep the lock while working (another replica takes over only if we die). */
        const char *argv[] = {"PEXPIRE", LOCK_KEY, "120000"};
        state_store_command(b->store, NULL, NULL, 3, argv, NULL);
        snprintf(member, sizeof(member), "backfill-%d-%llu", (int)getpid(),
                 (unsigned long long)state_now_ms());
        if (state_outbox_rate_window(b->store, "intercom", svc_intercom_window_budget(b->cfg),
                                     SVC_INTERCOM_WINDOW_MS, member, on_rate, b) < 0)
            retry_later(b, backoff_ms(b), "Redis is not reachable");
        else
            b->pending_redis++;
        return;
    }
    case PH_SAVE: {
        char pages[24], records[24];
        snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
        snprintf(pages, sizeof(pages), "%lld", b->pages);
        snprintf(records, sizeof(records), "%lld", b->records);
        const char *field = b->kind ? "tickets_cursor" : "conversations_cursor";
        if (b->next_cursor != NULL) {
            const char *argv[] = {"HSET", STATE_KEY, field, b->next_cursor, "pages", pages,
                                  "records", records, "updated_at", now};
            if (command(b, on_saved, 10, argv) < 0)
                retry_later(b, backoff_ms(b), "Redis is not reachable");
        } else {
            const char *done = b->kind ? "tickets_done" : "conversations_done";
            const char *argv[] = {"HSET", STATE_KEY, done, "1", "pages", pages,
                                  "records", records, "updated_at", now};
            if (command(b, on_saved, 10, argv) < 0)
                retry_later(b, backoff_ms(b), "Redis is not reachable");
        }
        return;
    }
    case PH_FINISH: {
        snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
        const char *hdel[] = {"HDEL", STATE_KEY, "conversations_cursor", "tickets_cursor",
                              "conversations_done", "tickets_done", "error"};
        state_store_command(b->store, NULL, NULL, 7, hdel, NULL);
        const char *del[] = {"DEL", LOCK_KEY};
        state_store_command(b->store, NULL, NULL, 2, del, NULL);
        const char *argv[] = {"HSET", STATE_KEY, "status", "done", "completed_at", now,
                              "updated_at", now};
        if (command(b, on_finished, 8, argv) < 0)
            retry_later(b, backoff_ms(b), "Redis is not reachable");
        return;
    }
    case PH_APPLY:
        return;
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    step(arg);
}

struct svc_backfill *svc_backfill_start(struct event_base *base, struct state_store *store,
                                        struct svc_curl *curl, const struct svc_config *cfg,
                                        int restart, svc_backfill_fn *fn, void *arg,
                                        struct svc_backfill **slot) {
    struct svc_backfill *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->base = base;
    b->store = store;
    b->curl = curl;
    b->cfg = cfg;
    b->fn = fn;
    b->arg = arg;
    b->slot = slot;
    b->restart = restart;
    snprintf(b->owner, sizeof(b->owner), "%d-%llu", (int)getpid(),
             (unsigned long long)state_now_ms());
    b->timer = evtimer_new(base, on_timer, b);
    if (b->timer == NULL) {
        free(b);
        return NULL;
    }
    if (slot != NULL)
        *slot = b;
    /* Even a refusal is reported from the loop, after this returns. */
    b->phase = cfg->intercom_token == NULL ? PH_NO_TOKEN : PH_CONNECT;
    struct timeval zero = {0, 0};
    evtimer_add(b->timer, &zero);
    return b;
}

/*---------------------------------------------------------------------------
 * Status
 *--------------------------------------------------------------------------*/

struct status_ctx {
    svc_backfill_status_fn *fn;
    void *arg;
};

static void on_status(struct state_store *st, redisReply *r, void *arg) {
    struct status_ctx *c = arg;
    (void)st;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        c->fn(NULL, c->arg);
        free(c);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string("never_run"));
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const char *k = r->element[i]->str, *v = r->element[i + 1]->str;
        if (strcmp(k, "pages") == 0 || strcmp(k, "records") == 0 ||
            strcmp(k, "updated_at") == 0 || strcmp(k, "completed_at") == 0)
            json_object_set_new(o, k, json_integer(strtoll(v, NULL, 10)));
        else if (strcmp(k, "conversations_done") == 0 || strcmp(k, "tickets_done") == 0)
            json_object_set_new(o, k, json_true());
        else
            json_object_set_new(o, k, json_string(v));
    }
    c->fn(o, c->arg);
    json_decref(o);
    free(c);
}

int svc_backfill_status(struct state_store *store, svc_backfill_status_fn *fn, void *arg) {
    struct status_ctx *c = malloc(sizeof(*c));
    if (c == NULL)
        return -1;
    c->fn = fn;
    c->arg = arg;
    const char *argv[] = {"HGETALL", STATE_KEY};
    if (state_store_command(store, on_status, c, 2, argv, NULL) < 0) {
        free(c);
        return -1;
    }
    return 0;
}
