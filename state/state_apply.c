/* state_apply: records one normalized Intercom notification. See state_apply.h. */
#include "state/state_apply.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "state/state_keys.h"
#include "state/state_ulid.h"
#include "svc/svc_log.h"

#define MAX_USERS (STATE_MAX_CONTACTS + 1)
#define MAX_OWNERS 64

static atomic_ulong moves_total;

enum phase { PH_RESOLVE, PH_LINK, PH_APPLY, PH_DONE };

struct user_slot {
    char *uid;
    int sync;                     /* 0 for intercom:<id> identities */
};

struct apply_job {
    struct state_store *st;
    const struct state_change *chg;
    struct state_apply_opts o;
    state_apply_done_fn *done;
    void *arg;
    enum phase phase;
    int outstanding;
    int failed;
    int applied, duplicates;
    struct user_slot users[MAX_USERS];   /* by contact index */
    struct user_slot merge_src;          /* contact.merged: the merged-away identity */
    size_t nowners;                      /* owners from the ticket index */
    char *owners[MAX_OWNERS];
    int index_deleted;                   /* index says the ticket was deleted earlier */
};

/* A pending command's context. */
enum op_kind { OP_LOOKUP, OP_LOOKUP_MERGE, OP_LINK, OP_OWNERS, OP_APPLY, OP_INDEX_ADD,
               OP_INDEX_DETACH, OP_MOVE_READ, OP_MOVE_MERGE, OP_MOVE_FINISH };

struct move_job;

struct op {
    struct apply_job *job;
    enum op_kind kind;
    int idx;
    struct move_job *mv;
};

/* Moving one identity's state to another user: read, merge into target, then remove the
 * source, re-point the ticket index and (optionally) link a contact to the target. */
struct move_job {
    struct apply_job *job;
    char *from, *to, *link_contact;
    int from_sync, to_sync;
    char digest[41];
    json_t *fields;                      /* hash fields read from `from` */
    int finishing;                       /* commands of the last step still pending */
    int failed;
};

static void advance(struct apply_job *job);
static void on_op(struct state_store *st, redisReply *r, void *arg);

static void free_slot(struct user_slot *s) {
    free(s->uid);
    s->uid = NULL;
}

static void job_free(struct apply_job *job) {
    for (size_t i = 0; i < MAX_USERS; i++)
        free_slot(&job->users[i]);
    free_slot(&job->merge_src);
    for (size_t i = 0; i < job->nowners; i++)
        free(job->owners[i]);
    free(job);
}

static char *intercom_id(const char *contact_id) {
    size_t n = strlen(contact_id) + 10;
    char *s = malloc(n);
    if (s == NULL)
        abort();
    snprintf(s, n, "intercom:%s", contact_id);
    return s;
}

static char *xstrdup(const char *s) {
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

static int is_synced(const char *uid) {
    return strncmp(uid, "intercom:", 9) != 0;
}

static void i64(char *buf, size_t n, int64_t v) {
    snprintf(buf, n, "%lld", (long long)v);
}

/* Sends a script call on behalf of job; counts it, or marks the job failed. */
static void send_eval(struct apply_job *job, enum state_script script, enum op_kind kind,
                      int idx, struct move_job *mv, int nkeys, int argc, const char **argv,
                      const size_t *lens) {
    struct op *op = malloc(sizeof(*op));
    if (op == NULL)
        abort();
    op->job = job;
    op->kind = kind;
    op->idx = idx;
    op->mv = mv;
    if (state_store_eval(job->st, script, on_op, op, nkeys, argc, argv, lens) < 0) {
        free(op);
        job->failed = 1;
        if (mv != NULL)
            mv->failed = 1;
        return;
    }
    job->outstanding++;
}

/*---------------------------------------------------------------------------
 * Building apply.lua calls
 *--------------------------------------------------------------------------*/

static const char *state_code(enum state_ticket_state s) {
    switch (s) {
    case STATE_TICKET_OPEN:
        return "o";
    case STATE_TICKET_SNOOZED:
        return "s";
    case STATE_TICKET_CLOSED:
        return "c";
    default:
        return "";
    }
}

/* The change for one user as apply.lua reads it. Returns a new reference. */
static json_t *change_json(const struct apply_job *job) {
    const struct state_change *chg = job->chg;
    json_t *c = json_object();
    json_object_set_new(c, "at", json_integer(chg->event_at));
    size_t nevents = 2;

    if (chg->kind == STATE_CHANGE_TICKET && chg->ticket_id != NULL) {
        json_t *t = json_object();
        json_object_set_new(t, "id", json_string(chg->ticket_id));
        json_object_set_new(t, "k", json_string(chg->ticket_kind == STATE_KIND_TICKET ? "t" : "c"));
        /* A detached contact keeps a tombstone: an older attach delivered late can't
         * bring the ticket back. */
        json_object_set_new(t, "s", json_string(chg->detached ? "x"
                                                              : state_code(chg->ticket_state)));
        json_object_set_new(t, "p", json_integer(chg->priority));
        json_object_set_new(t, "o", json_integer(chg->opened_at));
        json_object_set_new(t, "u", json_integer(chg->updated_at));
        if (chg->category != NULL)
            json_object_set_new(t, "cat", json_string(chg->category));
        json_object_set_new(c, "t", t);
        if (chg->rating > 0) {
            json_t *cs = json_object();
            json_object_set_new(cs, "s", json_integer(chg->rating));
            json_object_set_new(cs, "at", json_integer(chg->rating_at));
            json_object_set_new(cs, "tid", json_string(chg->ticket_id));
            json_object_set_new(c, "csat", cs);
            nevents++;
        }
    }
    if (chg->ntags > 0 && !chg->untag) {
        json_t *tags = json_array();
        for (size_t i = 0; i < chg->ntags; i++) {
            const struct state_tag *tg = &chg->tags[i];
            /* Contact tags matter only when they mark churn risk. */
            if (chg->kind == STATE_CHANGE_CONTACT_TAG && !tg->churn)
                continue;
            json_t *o = json_object();
            json_object_set_new(o, "n", json_string(tg->name));
            json_object_set_new(o, "c", json_integer(tg->churn ? 1 : 0));
            json_object_set_new(o, "at", json_integer(tg->at));
            if (chg->kind == STATE_CHANGE_TICKET && chg->ticket_id != NULL)
                json_object_set_new(o, "tid", json_string(chg->ticket_id));
            json_array_append_new(tags, o);
            nevents++;
        }
        if (json_array_size(tags) > 0)
            json_object_set_new(c, "tags", tags);
        else
            json_decref(tags);
    }
    if (chg->untag) {
        int64_t at = 0;
        for (size_t i = 0; i < chg->ntags; i++) {
            if (chg->tags[i].churn && chg->tags[i].at > at)
                at = chg->tags[i].at;
        }
        if (at > 0)
            json_object_set_new(c, "untag", json_integer(at));
    }
    if (chg->profile != NULL &&
        (chg->kind == STATE_CHANGE_CONTACT || chg->kind == STATE_CHANGE_CONTACT_TAG))
        json_object_set(c, "attrs", (json_t *)(uintptr_t)chg->profile);
    if (chg->synced != NULL && chg->kind == STATE_CHANGE_CONTACT) {
        json_object_set(c, "synced", (json_t *)(uintptr_t)chg->synced);
        nevents++;
    }
    /* Event ids are minted here, once per recorded notification, so every retry of the
     * Customer.io send carries the same id. */
    json_t *ids = json_array();
    uint64_t ms = state_now_ms();
    for (size_t i = 0; i < nevents; i++) {
        char id[STATE_ULID_LEN + 1];
        state_ulid_new(id, ms);
        json_array_append_new(ids, json_string(id));
    }
    json_object_set_new(c, "ids", ids);
    return c;
}

/* Sends apply.lua for `uid` with change `c` (stolen). dedupe: use the notification's. */
static void send_apply(struct apply_job *job, const char *uid, int sync, json_t *c,
                       int dedupe, enum op_kind kind, int idx, struct move_job *mv) {
    char ukey[STATE_KEY_MAX], qkey[STATE_KEY_MAX], ekey[STATE_KEY_MAX];
    char now[24], keep[24];
    char *cj = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    if (cj == NULL) {
        job->failed = 1;
        return;
    }
    size_t lens[9];
    lens[0] = state_key_user(ukey, uid);
    lens[1] = state_key_queue(qkey, uid);
    lens[2] = state_key_events(ekey, uid);
    i64(now, sizeof(now), job->o.now);
    i64(keep, sizeof(keep), job->o.keep);
    const char *argv[9] = {ukey, qkey, ekey, now, dedupe ? job->chg->dedupe : "",
                           sync ? "1" : "0", cj, uid, keep};
    for (int i = 3; i < 9; i++)
        lens[i] = strlen(argv[i]);
    send_eval(job, STATE_SCRIPT_APPLY, kind, idx, mv, 3, 9, argv, lens);
    free(cj);
}

static json_t *simple_change(const struct apply_job *job, const char *key, json_t *value) {
    json_t *c = json_object();
    json_object_set_new(c, "at", json_integer(job->chg->event_at));
    if (key != NULL)
        json_object_set_new(c, key, value);
    return c;
}

/*---------------------------------------------------------------------------
 * Identity moves
 *--------------------------------------------------------------------------*/

static void start_move(struct apply_job *job, const char *from, const char *to,
                       const char *link_contact) {
    struct move_job *mv = calloc(1, sizeof(*mv));
    if (mv == NULL)
        abort();
    mv->job = job;
    mv->from = xstrdup(from);
    mv->to = xstrdup(to);
    mv->from_sync = is_synced(from);
    mv->to_sync = is_synced(to);
    mv->link_contact = link_contact ? xstrdup(link_contact) : NULL;
    char ukey[STATE_KEY_MAX], ekey[STATE_KEY_MAX];
    state_key_user(ukey, from);
    state_key_events(ekey, from);
    const char *argv[] = {ukey, ekey, "read"};
    send_eval(job, STATE_SCRIPT_TAKE, OP_MOVE_READ, 0, mv, 2, 3, argv, NULL);
    if (mv->failed) {
        free(mv->from);
        free(mv->to);
        free(mv->link_contact);
        free(mv);
    }
}

static void move_free(struct move_job *mv) {
    json_decref(mv->fields);
    free(mv->from);
    free(mv->to);
    free(mv->link_contact);
    free(mv);
}

static void link_force(struct apply_job *job, const char *contact, const char *uid,
                       struct move_job *mv) {
    char key[STATE_KEY_MAX], now[24];
    state_key_contact(key, contact);
    i64(now, sizeof(now), job->o.now);
    const char *argv[] = {key, "force", contact, uid, now};
    send_eval(job, STATE_SCRIPT_LINK, mv ? OP_MOVE_FINISH : OP_LINK, -1, mv, 1, 5, argv, NULL);
}

/* Last step of a move, after the merge into the target succeeded. */
static void move_finish(struct move_job *mv) {
    struct apply_job *job = mv->job;
    char ukey[STATE_KEY_MAX], ekey[STATE_KEY_MAX], qkey[STATE_KEY_MAX], now[24], ttl[24];
    i64(now, sizeof(now), job->o.now);
    i64(ttl, sizeof(ttl), job->o.index_ttl);
    int before = job->outstanding;

    if (mv->fields != NULL) {
        state_key_user(ukey, mv->from);
        state_key_events(ekey, mv->from);
        state_key_queue(qkey, mv->from);
        const char *argv[] = {ukey, ekey, qkey, "remove", mv->digest, mv->from,
                              mv->from_sync ? "1" : "0"};
        send_eval(job, STATE_SCRIPT_TAKE, OP_MOVE_FINISH, 0, mv, 3, 7, argv, NULL);
        const char *field;
        json_t *val;
        json_object_foreach(mv->fields, field, val) {
            if (strncmp(field, "t:", 2) != 0)
                continue;
            char tkey[STATE_KEY_MAX];
            state_key_ticket(tkey, field + 2);
            const char *margv[] = {tkey, "move", now, ttl, field + 2, mv->from, mv->to};
            send_eval(job, STATE_SCRIPT_INDEX, OP_MOVE_FINISH, 0, mv, 1, 7, margv, NULL);
        }
    }
    if (mv->link_contact != NULL)
        link_force(job, mv->link_contact, mv->to, mv);
    mv->finishing = job->outstanding - before;
    if (mv->finishing == 0) {
        atomic_fetch_add(&moves_total, 1);
        move_free(mv);
    }
}

static void on_move_reply(struct apply_job *job, struct op *op, redisReply *r) {
    struct move_job *mv = op->mv;
    switch (op->kind) {
    case OP_MOVE_READ: {
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
            r->element[0]->type != REDIS_REPLY_STRING) {
            job->failed = 1;
            move_free(mv);
            return;
        }
        snprintf(mv->digest, sizeof(mv->digest), "%s", r->element[0]->str);
        if (r->elements < 3) {
            move_finish(mv); /* nothing stored under the old identity: just link */
            return;
        }
        mv->fields = json_object();
        for (size_t i = 1; i + 1 < r->elements; i += 2)
            json_object_set_new(mv->fields, r->element[i]->str,
                                json_stringn(r->element[i + 1]->str, r->element[i + 1]->len));
        send_apply(job, mv->to, mv->to_sync,
                   simple_change(job, "merge", json_incref(mv->fields)), 0, OP_MOVE_MERGE,
                   0, mv);
        if (mv->failed)
            move_free(mv);
        return;
    }
    case OP_MOVE_MERGE:
        move_finish(mv);
        return;
    case OP_MOVE_FINISH:
        if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
            strcmp(r->element[0]->str, "changed") == 0)
            svc_log_warn("identity_move_raced", "from", json_string(mv->from),
                         "to", json_string(mv->to), NULL);
        if (--mv->finishing == 0) {
            atomic_fetch_add(&moves_total, 1);
            move_free(mv);
        }
        return;
    default:
        return;
    }
}

/*---------------------------------------------------------------------------
 * Phases
 *--------------------------------------------------------------------------*/

/* link.lua "lookup": the user a contact id belongs to; with `ask`, an unknown contact is
 * also queued for an Intercom look-up in the same atomic step. */
static void send_lookup(struct apply_job *job, const char *contact, int ask, enum op_kind kind,
                        int idx) {
    char key[STATE_KEY_MAX], lkey[STATE_KEY_MAX], qkey[STATE_KEY_MAX], rkey[STATE_KEY_MAX];
    char now[24], now_ms[24], lttl[24];
    unsigned p = state_partition(contact, strlen(contact));
    state_key_contact(key, contact);
    state_key_contact_lookup(lkey, contact);
    state_key_jobs_n(qkey, p);
    state_key_job_records_n(rkey, p);
    i64(now, sizeof(now), job->o.now);
    i64(now_ms, sizeof(now_ms), (int64_t)state_now_ms());
    i64(lttl, sizeof(lttl), job->o.lookup_ttl > 0 ? job->o.lookup_ttl : 1);
    const char *argv[] = {key,     lkey, qkey,          rkey,   "lookup", contact,
                          "",      now,  ask ? "1" : "0", now_ms, lttl};
    send_eval(job, STATE_SCRIPT_LINK, kind, idx, NULL, 4, 11, argv, NULL);
}

static void phase_resolve(struct apply_job *job) {
    const struct state_change *chg = job->chg;
    char key[STATE_KEY_MAX], now[24];
    i64(now, sizeof(now), job->o.now);

    for (size_t i = 0; i < chg->ncontacts; i++) {
        const struct state_contact *ct = &chg->contacts[i];
        if (ct->external_id != NULL) {
            job->users[i].uid = xstrdup(ct->external_id);
            job->users[i].sync = is_synced(ct->external_id);
        } else if (ct->contact_id != NULL) {
            /* Leads never have an external_id: looking them up would only cost API calls. */
            int ask = job->o.lookup_ttl > 0 &&
                      (chg->role == NULL || strcmp(chg->role, "lead") != 0);
            send_lookup(job, ct->contact_id, ask, OP_LOOKUP, (int)i);
        }
    }
    if (chg->kind == STATE_CHANGE_CONTACT_MERGED) {
        const struct state_contact *ct = &chg->merge_from;
        if (ct->external_id != NULL) {
            job->merge_src.uid = xstrdup(ct->external_id);
        } else if (ct->contact_id != NULL) {
            send_lookup(job, ct->contact_id, 0, OP_LOOKUP_MERGE, -1);
        }
    }
    int need_owners = chg->kind == STATE_CHANGE_TICKET_DELETED ||
                      (chg->kind == STATE_CHANGE_TICKET && chg->ncontacts == 0);
    if (need_owners && chg->ticket_id != NULL) {
        char ittl[24];
        i64(ittl, sizeof(ittl), job->o.index_ttl);
        state_key_ticket(key, chg->ticket_id);
        const char *mode = chg->kind == STATE_CHANGE_TICKET_DELETED ? "delete" : "owners";
        const char *argv[] = {key, mode, now, ittl, chg->ticket_id};
        send_eval(job, STATE_SCRIPT_INDEX, OP_OWNERS, -1, NULL, 1, 5, argv, NULL);
    }
}

static void phase_link(struct apply_job *job) {
    const struct state_change *chg = job->chg;
    char key[STATE_KEY_MAX], now[24];
    i64(now, sizeof(now), job->o.now);
    for (size_t i = 0; i < chg->ncontacts; i++) {
        const struct state_contact *ct = &chg->contacts[i];
        if (ct->external_id == NULL || ct->contact_id == NULL)
            continue;
        state_key_contact(key, ct->contact_id);
        const char *argv[] = {key, "link", ct->contact_id, ct->external_id, now};
        send_eval(job, STATE_SCRIPT_LINK, OP_LINK, (int)i, NULL, 1, 5, argv, NULL);
    }
    if (chg->kind == STATE_CHANGE_CONTACT_MERGED && job->merge_src.uid != NULL &&
        chg->ncontacts > 0 && job->users[0].uid != NULL &&
        strcmp(job->merge_src.uid, job->users[0].uid) != 0) {
        start_move(job, job->merge_src.uid, job->users[0].uid, chg->merge_from.contact_id);
    }
}

static void apply_ticket(struct apply_job *job) {
    const struct state_change *chg = job->chg;
    const char *owners[MAX_USERS + MAX_OWNERS];
    size_t nown = 0;

    for (size_t i = 0; i < chg->ncontacts; i++) {
        if (job->users[i].uid != NULL)
            owners[nown++] = job->users[i].uid;
    }
    for (size_t i = 0; i < job->nowners; i++)
        owners[nown++] = job->owners[i];
    if (nown == 0)
        return;

    char key[STATE_KEY_MAX], now[24], ttl[24];
    i64(now, sizeof(now), job->o.now);
    i64(ttl, sizeof(ttl), job->o.index_ttl);
    state_key_ticket(key, chg->ticket_id);
    const char *argv[7 + MAX_USERS + MAX_OWNERS] = {key, "add", now, ttl, chg->ticket_id,
                                                    chg->ticket_state == STATE_TICKET_CLOSED
                                                        ? "1" : "0"};
    if (chg->detached) {
        /* The listed contacts left the conversation: they lose the ticket, others keep it. */
        argv[1] = "detach";
        for (size_t i = 0; i < nown; i++)
            argv[5 + i] = owners[i];
        send_eval(job, STATE_SCRIPT_INDEX, OP_INDEX_DETACH, -1, NULL, 1, 5 + (int)nown, argv,
                  NULL);
        for (size_t i = 0; i < chg->ncontacts; i++) {
            if (job->users[i].uid != NULL)
                send_apply(job, job->users[i].uid, job->users[i].sync, change_json(job), 1,
                           OP_APPLY, (int)i, NULL);
        }
        return;
    }
    /* The ticket's newest known version travels with the index, so owners named by
     * different deliveries converge (e.g. a close listing one contact, then a late attach
     * of another). */
    char version[160] = "";
    if (chg->ticket_state != STATE_TICKET_UNKNOWN)
        snprintf(version, sizeof(version), "%s|%lld|%lld|%c|%lld|%d",
                 state_code(chg->ticket_state), (long long)chg->updated_at,
                 (long long)chg->event_at, chg->ticket_kind == STATE_KIND_TICKET ? 't' : 'c',
                 (long long)chg->opened_at, chg->priority);
    argv[6] = version;
    for (size_t i = 0; i < nown; i++)
        argv[7 + i] = owners[i];
    send_eval(job, STATE_SCRIPT_INDEX, OP_INDEX_ADD, -1, NULL, 1, 7 + (int)nown, argv, NULL);
    for (size_t i = 0; i < chg->ncontacts; i++) {
        if (job->users[i].uid != NULL)
            send_apply(job, job->users[i].uid, job->users[i].sync, change_json(job), 1,
                       OP_APPLY, (int)i, NULL);
    }
    for (size_t i = 0; i < job->nowners; i++)
        send_apply(job, job->owners[i], is_synced(job->owners[i]), change_json(job), 1,
                   OP_APPLY, -1, NULL);
}

static void phase_apply(struct apply_job *job) {
    const struct state_change *chg = job->chg;
    switch (chg->kind) {
    case STATE_CHANGE_TICKET:
        if (chg->ticket_id != NULL)
            apply_ticket(job);
        break;
    case STATE_CHANGE_TICKET_DELETED:
        for (size_t i = 0; i < job->nowners; i++)
            send_apply(job, job->owners[i], is_synced(job->owners[i]),
                       simple_change(job, "del", json_string(chg->ticket_id)), 1, OP_APPLY,
                       -1, NULL);
        break;
    case STATE_CHANGE_CONTACT_TAG:
    case STATE_CHANGE_CONTACT:
        for (size_t i = 0; i < chg->ncontacts; i++) {
            if (job->users[i].uid != NULL)
                send_apply(job, job->users[i].uid, job->users[i].sync, change_json(job), 1,
                           OP_APPLY, (int)i, NULL);
        }
        break;
    default:
        break;
    }
}

static void on_done_deferred(evutil_socket_t fd, short what, void *arg) {
    struct apply_job *job = arg;
    (void)fd;
    (void)what;
    enum state_apply_result res = job->failed ? STATE_APPLY_FAILED
                                  : (job->applied == 0 && job->duplicates > 0)
                                      ? STATE_APPLY_DUPLICATE
                                      : STATE_APPLIED;
    job->done(res, job->arg);
    job_free(job);
}

/* Moves to the next phase once the current one has no command in flight. */
static void advance(struct apply_job *job) {
    while (job->outstanding == 0) {
        if (job->failed || job->phase == PH_APPLY) {
            job->phase = PH_DONE;
            on_done_deferred(-1, 0, job);
            return;
        }
        job->phase++;
        if (job->phase == PH_LINK)
            phase_link(job);
        else if (job->phase == PH_APPLY)
            phase_apply(job);
    }
}

static void add_owner(struct apply_job *job, const char *uid) {
    for (size_t i = 0; i < job->nowners; i++) {
        if (strcmp(job->owners[i], uid) == 0)
            return;
    }
    for (size_t i = 0; i < job->chg->ncontacts; i++) {
        if (job->users[i].uid != NULL && strcmp(job->users[i].uid, uid) == 0)
            return;
    }
    if (job->nowners < MAX_OWNERS)
        job->owners[job->nowners++] = xstrdup(uid);
}

/* The index knows a newer version of this ticket than this delivery: apply it to this
 * delivery's users too (their apply.lua guard keeps whichever is newest). */
static void apply_newer_version(struct apply_job *job, const char *v) {
    char st[4], kind[4];
    long long u, nc, o;
    int p;
    if (sscanf(v, "%1[a-z]|%lld|%lld|%1[a-z]|%lld|%d", st, &u, &nc, kind, &o, &p) != 6)
        return;
    for (size_t i = 0; i < job->chg->ncontacts; i++) {
        if (job->users[i].uid == NULL)
            continue;
        json_t *t = json_object();
        json_object_set_new(t, "id", json_string(job->chg->ticket_id));
        json_object_set_new(t, "k", json_string(kind));
        json_object_set_new(t, "s", json_string(st));
        json_object_set_new(t, "p", json_integer(p));
        json_object_set_new(t, "o", json_integer(o));
        json_object_set_new(t, "u", json_integer(u));
        json_t *c = json_object();
        json_object_set_new(c, "at", json_integer(nc));
        json_object_set_new(c, "t", t);
        json_t *ids = json_array();
        for (int k = 0; k < 2; k++) {
            char id[STATE_ULID_LEN + 1];
            state_ulid_new(id, state_now_ms());
            json_array_append_new(ids, json_string(id));
        }
        json_object_set_new(c, "ids", ids);
        send_apply(job, job->users[i].uid, job->users[i].sync, c, 0, OP_APPLY, -1, NULL);
    }
}

static void on_op(struct state_store *st, redisReply *r, void *arg) {
    struct op *op = arg;
    struct apply_job *job = op->job;
    (void)st;
    job->outstanding--;

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        if (r != NULL)
            svc_log_error("redis_script_error", "error", json_string(r->str), NULL);
        job->failed = 1;
        if (op->mv != NULL) {
            op->mv->failed = 1;
            /* The move stops here; its remaining commands (if any) still answer. */
            if (op->kind != OP_MOVE_FINISH || --op->mv->finishing == 0)
                move_free(op->mv);
        }
        free(op);
        advance(job);
        return;
    }

    switch (op->kind) {
    case OP_LOOKUP:
    case OP_LOOKUP_MERGE: {
        struct user_slot *slot = op->kind == OP_LOOKUP ? &job->users[op->idx] : &job->merge_src;
        const struct state_contact *ct = op->kind == OP_LOOKUP ? &job->chg->contacts[op->idx]
                                                               : &job->chg->merge_from;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            strcmp(r->element[0]->str, "user") == 0) {
            slot->uid = xstrdup(r->element[1]->str);
        } else {
            slot->uid = intercom_id(ct->contact_id);
        }
        slot->sync = is_synced(slot->uid);
        break;
    }
    case OP_LINK:
        if (op->idx >= 0 && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
            strcmp(r->element[0]->str, "migrate") == 0) {
            const struct state_contact *ct = &job->chg->contacts[op->idx];
            char *from = intercom_id(ct->contact_id);
            start_move(job, from, job->users[op->idx].uid, ct->contact_id);
            free(from);
        }
        break;
    case OP_OWNERS:
        if (r->type == REDIS_REPLY_ARRAY) {
            for (size_t i = 1; i < r->elements; i++)
                add_owner(job, r->element[i]->str);
            /* A delete seen before, for a ticket nobody owns: nothing else would record
             * that this redelivery is a duplicate. */
            if (r->elements == 1 && strcmp(r->element[0]->str, "already") == 0)
                job->duplicates++;
        }
        break;
    case OP_INDEX_ADD:
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            strcmp(r->element[0]->str, "newer") == 0) {
            apply_newer_version(job, r->element[1]->str);
        } else if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
            strcmp(r->element[0]->str, "deleted") == 0 && !job->index_deleted) {
            /* Deleted before this (late) delivery arrived: delete it for these owners. */
            job->index_deleted = 1;
            for (size_t i = 0; i < job->chg->ncontacts; i++) {
                if (job->users[i].uid != NULL)
                    send_apply(job, job->users[i].uid, job->users[i].sync,
                               simple_change(job, "del", json_string(job->chg->ticket_id)), 0,
                               OP_APPLY, -1, NULL);
            }
        }
        break;
    case OP_INDEX_DETACH:
        break;
    case OP_APPLY:
        if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
            r->element[0]->type == REDIS_REPLY_STRING) {
            if (strcmp(r->element[0]->str, "dup") == 0)
                job->duplicates++;
            else
                job->applied++;
        }
        break;
    case OP_MOVE_READ:
    case OP_MOVE_MERGE:
    case OP_MOVE_FINISH:
        on_move_reply(job, op, r);
        break;
    }
    free(op);
    advance(job);
}

int state_apply(struct state_store *st, const struct state_change *chg,
                const struct state_apply_opts *o, state_apply_done_fn *done, void *arg) {
    if (!state_store_ready(st))
        return -1;
    struct apply_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return -1;
    job->st = st;
    job->chg = chg;
    job->o = *o;
    job->done = done;
    job->arg = arg;
    job->phase = PH_RESOLVE;
    job->outstanding = 1; /* held until phase_resolve has sent everything */
    phase_resolve(job);
    job->outstanding--;
    if (job->outstanding == 0) {
        /* Nothing to wait for yet: run the next phases now, but report through the loop so
         * `done` never runs before state_apply returns. */
        job->phase++;
        if (!job->failed) {
            phase_link(job);
            if (job->outstanding == 0) {
                job->phase++;
                phase_apply(job);
            }
        }
        if (job->outstanding == 0) {
            job->phase = PH_DONE;
            if (event_base_once(state_store_base(st), -1, EV_TIMEOUT, on_done_deferred, job,
                                NULL) < 0) {
                job_free(job);
                return -1;
            }
            return 0;
        }
    }
    return 0;
}

unsigned long state_apply_moves_total(void) {
    return atomic_load(&moves_total);
}
