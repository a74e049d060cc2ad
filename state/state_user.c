/* state_user: reading users back. See state_user.h. */
#include "state/state_user.h"

#include <stdlib.h>
#include <string.h>

#include "state/state_keys.h"

/* Parses a decimal integer of exactly `len` bytes; 0 when malformed. */
static int64_t to_i64(const char *s, size_t len) {
    int64_t v = 0;
    int neg = 0;
    size_t i = 0;
    if (len > 0 && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == len || len > 20)
        return 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    return neg ? -v : v;
}

static int field_is(const char *f, size_t flen, const char *name) {
    size_t n = strlen(name);
    return flen == n && memcmp(f, name, n) == 0;
}

/* Reads one rule fact into facts; ignores other fields. */
static void set_fact(struct state_facts *facts, const char *f, size_t flen, const char *v,
                     size_t vlen) {
    int64_t x = to_i64(v, vlen);
    if (field_is(f, flen, "n"))
        facts->open_tickets = x;
    else if (field_is(f, flen, "pa"))
        facts->priority_opened_at = x;
    else if (field_is(f, flen, "ca"))
        facts->churn_tagged_at = x;
    else if (field_is(f, flen, "cu"))
        facts->churn_untagged_at = x;
    else if (field_is(f, flen, "cs"))
        facts->csat_score = x;
    else if (field_is(f, flen, "ct"))
        facts->csat_at = x;
}

/* Parses "kind|state|prio|u-opened_at|u|..." (see apply.lua: times are stored as
 * differences from u, Intercom's updated_at). Returns 0 or -1. */
static int parse_ticket(const char *v, size_t len, struct state_user_ticket *t) {
    char buf[128];
    if (len >= sizeof(buf))
        return -1;
    memcpy(buf, v, len);
    buf[len] = '\0';
    char *parts[5];
    char *save = NULL, *p = buf;
    for (int i = 0; i < 5; i++) {
        parts[i] = strtok_r(p, "|", &save);
        p = NULL;
        if (parts[i] == NULL)
            return -1;
    }
    t->kind = parts[0][0] == 't' ? STATE_KIND_TICKET : STATE_KIND_CONVERSATION;
    switch (parts[1][0]) {
    case 'o':
        t->state = STATE_TICKET_OPEN;
        break;
    case 's':
        t->state = STATE_TICKET_SNOOZED;
        break;
    default:
        t->state = STATE_TICKET_CLOSED;
        break;
    }
    t->priority = parts[2][0] == '1';
    t->updated_at = to_i64(parts[4], strlen(parts[4]));
    t->opened_at = t->updated_at - to_i64(parts[3], strlen(parts[3]));
    return 0;
}

static int cmp_ticket(const void *a, const void *b) {
    const struct state_user_ticket *x = a, *y = b;
    if (x->opened_at != y->opened_at)
        return x->opened_at < y->opened_at ? -1 : 1;
    return strcmp(x->id, y->id);
}

int state_user_from_fields(struct state_user *u, size_t n, const char *const *fields,
                           const size_t *flens, const char *const *vals, const size_t *vlens) {
    memset(u, 0, sizeof(*u));
    for (size_t i = 0; i < n; i++) {
        const char *f = fields[i];
        size_t flen = flens[i];
        if (flen > 2 && f[0] == 't' && f[1] == ':') {
            struct state_user_ticket t = {0};
            if (parse_ticket(vals[i], vlens[i], &t) < 0 || t.state == STATE_TICKET_CLOSED)
                continue;
            if (vals[i][2] == 'd')
                continue;
            struct state_user_ticket *grown =
                realloc(u->tickets, (u->ntickets + 1) * sizeof(*u->tickets));
            if (grown == NULL)
                goto oom;
            u->tickets = grown;
            t.id = strndup(f + 2, flen - 2);
            if (t.id == NULL)
                goto oom;
            u->tickets[u->ntickets++] = t;
        } else if (field_is(f, flen, "ck")) {
            free(u->csat_ticket);
            u->csat_ticket = strndup(vals[i], vlens[i]);
            if (u->csat_ticket == NULL)
                goto oom;
        } else if (field_is(f, flen, "ua")) {
            u->updated_at = to_i64(vals[i], vlens[i]);
        } else {
            set_fact(&u->facts, f, flen, vals[i], vlens[i]);
        }
    }
    if (u->ntickets > 1)
        qsort(u->tickets, u->ntickets, sizeof(*u->tickets), cmp_ticket);
    /* The list is the truth for the count; `n` is its cached copy for fast checks. */
    u->facts.open_tickets = (int64_t)u->ntickets;
    return 0;
oom:
    state_user_clear(u);
    return -1;
}

void state_user_clear(struct state_user *u) {
    for (size_t i = 0; i < u->ntickets; i++)
        free(u->tickets[i].id);
    free(u->tickets);
    free(u->csat_ticket);
    memset(u, 0, sizeof(*u));
}

/*---------------------------------------------------------------------------
 * One user
 *--------------------------------------------------------------------------*/

struct get_ctx {
    state_user_fn *fn;
    void *arg;
};

static void on_hgetall(struct state_store *st, redisReply *r, void *arg) {
    struct get_ctx *ctx = arg;
    (void)st;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        ctx->fn(NULL, ctx->arg);
        free(ctx);
        return;
    }
    size_t n = r->elements / 2;
    const char **fields = malloc((n ? n : 1) * sizeof(char *));
    const char **vals = malloc((n ? n : 1) * sizeof(char *));
    size_t *flens = malloc((n ? n : 1) * sizeof(size_t));
    size_t *vlens = malloc((n ? n : 1) * sizeof(size_t));
    struct state_user u;
    int ok = fields && vals && flens && vlens;
    if (ok) {
        for (size_t i = 0; i < n; i++) {
            fields[i] = r->element[2 * i]->str;
            flens[i] = r->element[2 * i]->len;
            vals[i] = r->element[2 * i + 1]->str;
            vlens[i] = r->element[2 * i + 1]->len;
        }
        ok = state_user_from_fields(&u, n, fields, flens, vals, vlens) == 0;
    }
    ctx->fn(ok ? &u : NULL, ctx->arg);
    if (ok)
        state_user_clear(&u);
    free(fields);
    free(vals);
    free(flens);
    free(vlens);
    free(ctx);
}

int state_user_get(struct state_store *st, const char *uid, state_user_fn *fn, void *arg) {
    char key[STATE_KEY_MAX];
    size_t klen = state_key_user(key, uid);
    struct get_ctx *ctx = malloc(sizeof(*ctx));
    if (ctx == NULL)
        return -1;
    ctx->fn = fn;
    ctx->arg = arg;
    const char *argv[] = {"HGETALL", key};
    const size_t lens[] = {7, klen};
    if (state_store_command(st, on_hgetall, ctx, 2, argv, lens) < 0) {
        free(ctx);
        return -1;
    }
    return 0;
}

/*---------------------------------------------------------------------------
 * Many users' facts
 *--------------------------------------------------------------------------*/

static const char *fact_fields[] = {"n", "pa", "ca", "cu", "cs", "ct"};
#define NFACTS 6

struct many_ctx {
    state_facts_fn *fn;
    void *arg;
    size_t n, remaining;
    int failed;
    struct state_facts *facts;
    struct many_slot *slots;
};

struct many_slot {
    struct many_ctx *ctx;
    size_t idx;
};

static void on_hmget(struct state_store *st, redisReply *r, void *arg) {
    struct many_slot *slot = arg;
    struct many_ctx *ctx = slot->ctx;
    (void)st;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != NFACTS) {
        ctx->failed = 1;
    } else {
        struct state_facts *f = &ctx->facts[slot->idx];
        for (size_t i = 0; i < NFACTS; i++) {
            if (r->element[i]->type == REDIS_REPLY_STRING)
                set_fact(f, fact_fields[i], strlen(fact_fields[i]), r->element[i]->str,
                         r->element[i]->len);
        }
    }
    if (--ctx->remaining == 0) {
        ctx->fn(ctx->failed ? NULL : ctx->facts, ctx->n, ctx->arg);
        free(ctx->facts);
        free(ctx->slots);
        free(ctx);
    }
}

int state_facts_get_many(struct state_store *st, const char *const *uids, size_t n,
                         state_facts_fn *fn, void *arg) {
    if (!state_store_ready(st) || n == 0)
        return -1;
    struct many_ctx *ctx = calloc(1, sizeof(*ctx));
    /* One allocation for all slots keeps a 1000-id batch to three mallocs. */
    struct many_slot *slots = calloc(n, sizeof(*slots));
    if (ctx == NULL || slots == NULL) {
        free(ctx);
        free(slots);
        return -1;
    }
    ctx->facts = calloc(n, sizeof(*ctx->facts));
    if (ctx->facts == NULL) {
        free(ctx);
        free(slots);
        return -1;
    }
    ctx->fn = fn;
    ctx->arg = arg;
    ctx->n = n;
    ctx->remaining = n;
    ctx->slots = slots; /* freed with ctx after the last reply */
    for (size_t i = 0; i < n; i++) {
        char key[STATE_KEY_MAX];
        size_t klen = state_key_user(key, uids[i]);
        const char *argv[2 + NFACTS] = {"HMGET", key};
        size_t lens[2 + NFACTS] = {5, klen};
        for (size_t j = 0; j < NFACTS; j++) {
            argv[2 + j] = fact_fields[j];
            lens[2 + j] = strlen(fact_fields[j]);
        }
        slots[i].ctx = ctx;
        slots[i].idx = i;
        if (state_store_command(st, on_hmget, &slots[i], 2 + NFACTS, argv, lens) < 0) {
            /* The connection dropped mid-batch: count the unsent ones as failed replies. */
            ctx->failed = 1;
            ctx->remaining -= n - i;
            if (ctx->remaining == 0) {
                free(ctx->facts);
                free(ctx);
                free(slots);
                return -1;
            }
            break;
        }
    }
    return 0;
}
