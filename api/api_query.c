/* api_query: the query API.
 *
 *   GET  /v1/users/{id}                      the user's state
 *   GET  /v1/users/{id}/suppression?campaign one campaign's verdict and reasons
 *   POST /v1/suppression/check               up to 1000 users, one pipelined Redis round
 *
 * Rules are evaluated here, against the clock at query time, from the facts state/
 * returns; windows therefore elapse without any write. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <sys/queue.h>

#include <event2/keyvalq_struct.h>

#include "api/api_http.h"
#include "state/state_user.h"

#define CHECK_MAX_IDS 1000

static json_t *time_or_null(int64_t t) {
    return t > 0 ? json_integer(t) : json_null();
}

/* Resolves ?campaign=. Returns the campaign, or NULL after answering 400. */
static const struct state_campaign *campaign_param(struct api_call *call) {
    const struct state_rules *rules = &call->env->cfg->rules;
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(call->req));
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    if (query != NULL && evhttp_parse_query_str(query, &params) < 0) {
        api_reply_error(call, 400, "invalid_request", "the query string is malformed");
        return NULL;
    }
    const char *name = evhttp_find_header(&params, "campaign");
    const struct state_campaign *c = name ? state_rules_find(rules, name) : NULL;
    if (name == NULL || *name == '\0') {
        api_reply_error(call, 400, "invalid_request", "the campaign query parameter is required");
    } else if (c == NULL) {
        char msg[160];
        snprintf(msg, sizeof(msg), "unknown campaign \"%.64s\"", name);
        api_reply_error(call, 400, "unknown_campaign", msg);
    }
    evhttp_clear_headers(&params);
    return c;
}

/*---------------------------------------------------------------------------
 * GET /v1/users/{id}
 *--------------------------------------------------------------------------*/

struct user_job {
    struct api_call *call;
    char *uid;
};

static const char *state_name(enum state_ticket_state s) {
    return s == STATE_TICKET_SNOOZED ? "snoozed" : "open";
}

static void on_user(const struct state_user *u, void *arg) {
    struct user_job *job = arg;
    struct api_call *call = job->call;
    if (u == NULL) {
        api_kept_reply_error(call, 503, "unavailable", "the state store is unavailable");
        free(job->uid);
        free(job);
        return;
    }
    const struct state_rules *rules = &call->env->cfg->rules;
    int64_t now = (int64_t)time(NULL);
    unsigned held = state_rules_conditions(rules, &u->facts, now);

    json_t *o = json_object();
    json_object_set_new(o, "user_id", json_string(job->uid));
    json_object_set_new(o, "has_open_ticket", json_boolean(u->ntickets > 0));
    json_object_set_new(o, "open_ticket_count", json_integer((json_int_t)u->ntickets));
    json_t *tickets = json_array();
    for (size_t i = 0; i < u->ntickets; i++) {
        const struct state_user_ticket *t = &u->tickets[i];
        json_t *to = json_object();
        json_object_set_new(to, "id", json_string(t->id));
        json_object_set_new(to, "kind", json_string(t->kind == STATE_KIND_TICKET ? "ticket"
                                                                                 : "conversation"));
        json_object_set_new(to, "state", json_string(state_name(t->state)));
        json_object_set_new(to, "priority", json_boolean(t->priority));
        json_object_set_new(to, "opened_at", json_integer(t->opened_at));
        json_object_set_new(to, "updated_at", json_integer(t->updated_at));
        json_array_append_new(tickets, to);
    }
    json_object_set_new(o, "open_tickets", tickets);
    json_object_set_new(o, "churn_risk",
                        json_boolean(state_rules_churn_active(rules, &u->facts, now)));
    json_object_set_new(o, "churn_risk_at", time_or_null(u->facts.churn_tagged_at));
    if (u->facts.csat_score > 0) {
        json_t *cs = json_object();
        json_object_set_new(cs, "score", json_integer(u->facts.csat_score));
        json_object_set_new(cs, "at", time_or_null(u->facts.csat_at));
        json_object_set_new(cs, "ticket_id", u->csat_ticket ? json_string(u->csat_ticket)
                                                            : json_null());
        json_object_set_new(o, "last_csat", cs);
    } else {
        json_object_set_new(o, "last_csat", json_null());
    }
    json_t *sup = json_object();
    for (size_t i = 0; i < rules->ncampaigns; i++)
        json_object_set_new(sup, rules->campaigns[i].name,
                            json_boolean((held & rules->campaigns[i].conds) != 0));
    json_object_set_new(o, "suppressed", sup);
    json_object_set_new(o, "updated_at", time_or_null(u->updated_at));
    api_kept_reply_json(call, 200, o);
    free(job->uid);
    free(job);
}

/*---------------------------------------------------------------------------
 * GET /v1/users/{id}/suppression and POST /v1/suppression/check
 *--------------------------------------------------------------------------*/

struct check_job {
    struct api_call *call;
    const struct state_campaign *campaign;
    int single;                   /* the GET form: answer one object */
    size_t n;
    char **uids;                  /* owned copies, request order */
};

static void check_job_free(struct check_job *job) {
    for (size_t i = 0; i < job->n; i++)
        free(job->uids[i]);
    free(job->uids);
    free(job);
}

/*
 * Verdicts are written as text directly: on the query path, building a jansson tree per
 * answer and dumping it cost more than deciding the verdict. The output is what
 * json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER) gave, byte for byte.
 */
struct jbuf {
    char *p;
    size_t len, cap;
    int oom;
    char stack[1024];
};

static void jb_reserve(struct jbuf *b, size_t more) {
    if (b->oom || b->len + more <= b->cap)
        return;
    size_t cap = b->cap * 2;
    while (cap < b->len + more)
        cap *= 2;
    char *p = b->p == b->stack ? malloc(cap) : realloc(b->p, cap);
    if (p == NULL) {
        b->oom = 1;
        return;
    }
    if (b->p == b->stack)
        memcpy(p, b->stack, b->len);
    b->p = p;
    b->cap = cap;
}

static void jb_add(struct jbuf *b, const char *s, size_t n) {
    jb_reserve(b, n);
    if (b->oom)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

#define JB_LIT(b, lit) jb_add((b), (lit), sizeof(lit) - 1)

/* The letter of a two-character JSON escape for c, or 0. */
static char short_escape(unsigned char c) {
    switch (c) {
    case '"':
        return '"';
    case '\\':
        return '\\';
    case '\b':
        return 'b';
    case '\f':
        return 'f';
    case '\n':
        return 'n';
    case '\r':
        return 'r';
    case '\t':
        return 't';
    default:
        return 0;
    }
}

/* A JSON string, escaped as jansson escapes it (quotes, backslash, control characters;
 * UTF-8 passes through: user ids are checked to be valid UTF-8 on the way in). */
static void jb_str(struct jbuf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(s);
    jb_reserve(b, 6 * n + 2);
    if (b->oom)
        return;
    char *o = b->p + b->len;
    *o++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char e = short_escape(*c);
        if (e != 0) {
            *o++ = '\\';
            *o++ = e;
        } else if (*c < 0x20) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[*c >> 4];
            o[5] = hex[*c & 15];
            o += 6;
        } else {
            *o++ = (char)*c;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
}

static void jb_verdict(struct jbuf *b, const struct check_job *job, const char *uid,
                       const struct state_facts *f, int64_t now, int with_campaign) {
    const struct state_rules *rules = &job->call->env->cfg->rules;
    unsigned wanted = job->campaign->conds;
    unsigned held = state_rules_conditions(rules, f, now) & wanted;
    JB_LIT(b, "{\"user_id\":");
    jb_str(b, uid);
    if (with_campaign) {
        JB_LIT(b, ",\"campaign\":");
        jb_str(b, job->campaign->name);
    }
    if (held != 0)
        JB_LIT(b, ",\"suppressed\":true,\"reasons\":[");
    else
        JB_LIT(b, ",\"suppressed\":false,\"reasons\":[");
    int first = 1;
    for (int c = 0; c < STATE_COND_COUNT; c++) {
        if (held & (1u << c)) {
            if (!first)
                JB_LIT(b, ",");
            jb_str(b, state_cond_name((enum state_cond)c));
            first = 0;
        }
    }
    JB_LIT(b, "]}");
}

static void on_facts(const struct state_facts *facts, size_t n, void *arg) {
    struct check_job *job = arg;
    struct api_call *call = job->call;
    if (facts == NULL) {
        api_kept_reply_error(call, 503, "unavailable", "the state store is unavailable");
        check_job_free(job);
        return;
    }
    int64_t now = (int64_t)time(NULL);
    struct jbuf b;
    b.p = b.stack;
    b.len = 0;
    b.cap = sizeof(b.stack);
    b.oom = 0;
    if (job->single) {
        jb_verdict(&b, job, job->uids[0], &facts[0], now, 1);
    } else {
        JB_LIT(&b, "{\"campaign\":");
        jb_str(&b, job->campaign->name);
        JB_LIT(&b, ",\"results\":[");
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                JB_LIT(&b, ",");
            jb_verdict(&b, job, job->uids[i], &facts[i], now, 0);
        }
        JB_LIT(&b, "]}");
        svc_metrics_checked_users(n);
    }
    JB_LIT(&b, "\n");
    if (b.oom)
        api_kept_reply_error(call, 500, "internal", "out of memory");
    else
        api_kept_reply_text(call, 200, b.p, b.len);
    if (b.p != b.stack)
        free(b.p);
    check_job_free(job);
}

static void start_check(struct api_call *call, struct check_job *job) {
    job->call = api_call_keep(call);
    if (job->call == NULL ||
        state_facts_get_many(call->env->store, (const char *const *)(void *)job->uids, job->n,
                             on_facts, job) < 0) {
        if (job->call != NULL) {
            call->env->inflight--;
            free(job->call);
        }
        check_job_free(job);
        api_reply_error(call, 503, "unavailable", "the state store is unavailable");
    }
}

void api_query_user(struct api_call *call, const char *user_id, int suppression) {
    if (suppression) {
        const struct state_campaign *c = campaign_param(call);
        if (c == NULL)
            return;
        struct check_job *job = calloc(1, sizeof(*job));
        if (job == NULL)
            return api_reply_error(call, 503, "unavailable", "out of memory");
        job->campaign = c;
        job->single = 1;
        job->n = 1;
        job->uids = calloc(1, sizeof(char *));
        if (job->uids == NULL || (job->uids[0] = strdup(user_id)) == NULL) {
            check_job_free(job);
            return api_reply_error(call, 503, "unavailable", "out of memory");
        }
        return start_check(call, job);
    }
    struct user_job *job = calloc(1, sizeof(*job));
    if (job == NULL || (job->uid = strdup(user_id)) == NULL) {
        free(job);
        return api_reply_error(call, 503, "unavailable", "out of memory");
    }
    job->call = api_call_keep(call);
    if (job->call == NULL || state_user_get(call->env->store, user_id, on_user, job) < 0) {
        if (job->call != NULL) {
            call->env->inflight--;
            free(job->call);
        }
        free(job->uid);
        free(job);
        api_reply_error(call, 503, "unavailable", "the state store is unavailable");
    }
}

void api_query_check(struct api_call *call) {
    struct evbuffer *in = evhttp_request_get_input_buffer(call->req);
    size_t len = evbuffer_get_length(in);
    json_error_t jerr;
    char msg[256];
    json_t *doc = json_loadb(len ? (const char *)evbuffer_pullup(in, -1) : "", len,
                             JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        snprintf(msg, sizeof(msg), "body is not valid JSON: %s", jerr.text);
        return api_reply_error(call, 400, "invalid_json", msg);
    }
    const json_t *campaign = json_object_get(doc, "campaign");
    const json_t *ids = json_object_get(doc, "user_ids");
    struct check_job *job = NULL;
    if (!json_is_object(doc)) {
        api_reply_error(call, 400, "invalid_request",
                        "body must be {\"campaign\": \"...\", \"user_ids\": [...]}");
        goto out;
    }
    if (!json_is_string(campaign)) {
        api_reply_error(call, 400, "invalid_request", "\"campaign\" must be a string");
        goto out;
    }
    const struct state_campaign *c =
        state_rules_find(&call->env->cfg->rules, json_string_value(campaign));
    if (c == NULL) {
        snprintf(msg, sizeof(msg), "unknown campaign \"%.64s\"", json_string_value(campaign));
        api_reply_error(call, 400, "unknown_campaign", msg);
        goto out;
    }
    if (!json_is_array(ids)) {
        api_reply_error(call, 400, "invalid_request", "\"user_ids\" must be a list of strings");
        goto out;
    }
    size_t n = json_array_size(ids);
    if (n == 0 || n > CHECK_MAX_IDS) {
        snprintf(msg, sizeof(msg), "\"user_ids\" must hold 1 to %d ids (got %zu)", CHECK_MAX_IDS,
                 n);
        api_reply_error(call, 400, "invalid_request", msg);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *id = json_array_get(ids, i);
        const char *why;
        if (!json_is_string(id)) {
            snprintf(msg, sizeof(msg), "user_ids[%zu] must be a string", i);
            api_reply_error(call, 400, "invalid_request", msg);
            goto out;
        }
        if (api_valid_user_id(json_string_value(id), json_string_length(id), &why) < 0) {
            snprintf(msg, sizeof(msg), "user_ids[%zu]: %s", i, why);
            api_reply_error(call, 400, "invalid_user_id", msg);
            goto out;
        }
    }
    job = calloc(1, sizeof(*job));
    if (job == NULL || (job->uids = calloc(n, sizeof(char *))) == NULL) {
        free(job);
        job = NULL;
        api_reply_error(call, 503, "unavailable", "out of memory");
        goto out;
    }
    job->campaign = c;
    for (size_t i = 0; i < n; i++) {
        job->uids[i] = strdup(json_string_value(json_array_get(ids, i)));
        if (job->uids[i] == NULL) {
            check_job_free(job);
            api_reply_error(call, 503, "unavailable", "out of memory");
            goto out;
        }
        job->n = i + 1;
    }
    start_check(call, job);
out:
    json_decref(doc);
}
