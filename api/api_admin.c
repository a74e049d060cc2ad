/* api_admin: the operator API under /v1/admin/ (the same Bearer auth as the query API).
 *
 *   GET  /v1/admin/queue                              depth, oldest age, dead letters, status
 *   GET  /v1/admin/dead-letters?limit=&cursor=        dead letters, newest first, paged
 *   POST /v1/admin/dead-letters/replay                requeue all (up to 1000 per call)
 *   POST /v1/admin/dead-letters/{id}/replay           requeue one
 *   POST /v1/admin/users/{id}/resync                  queue a fresh identify now
 *   POST /v1/admin/backfill[?restart=1]               start a backfill from Intercom (202)
 *   GET  /v1/admin/backfill                           its saved progress
 *
 * Destinations (?destination=): "customerio" (the default for dead letters) or
 * "intercom" (forwarded events, contact look-ups, ticket re-checks). The queue view
 * shows both unless one is named. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/keyvalq_struct.h>

#include "api/api_http.h"
#include "state/state_outbox.h"
#include "state/state_ulid.h"
#include "svc/svc_backfill.h"
#include "svc/svc_intercom.h"
#include "svc/svc_sync.h"

static const char *destination_param(struct api_call *call, struct evkeyvalq *params) {
    const char *d = evhttp_find_header(params, "destination");
    if (d == NULL || strcmp(d, "customerio") == 0)
        return "customerio";
    if (strcmp(d, "intercom") == 0)
        return "intercom";
    api_reply_error(call, 400, "unknown_destination", "destination must be customerio or intercom");
    return NULL;
}

/* A stream id: digits, "-", digits. Anything else cannot name a dead letter. */
static int valid_stream_id(const char *id) {
    size_t i = 0, dash = 0;
    if (!id[0] || strlen(id) > 40)
        return 0;
    for (; id[i]; i++) {
        if (id[i] == '-')
            dash++;
        else if (id[i] < '0' || id[i] > '9')
            return 0;
    }
    return dash == 1 && id[0] != '-' && id[i - 1] != '-';
}

static void on_json(json_t *result, void *arg) {
    struct api_call *call = arg;
    if (result == NULL)
        api_kept_reply_error(call, 503, "unavailable", "the state store is unavailable");
    else
        api_kept_reply_json(call, 200, json_incref(result));
}

static void on_replayed_one(json_t *result, void *arg) {
    struct api_call *call = arg;
    if (result != NULL && json_integer_value(json_object_get(result, "replayed")) == 0)
        api_kept_reply_error(call, 404, "not_found", "no dead letter with that id");
    else
        on_json(result, arg);
}

struct queue_ctx {
    struct api_call *call;
    const char *dest[2];
    int n, done, failed;
    json_t *dests;
};

static void on_stats(const struct state_outbox_stats *s, void *arg) {
    struct queue_ctx *q = arg;
    const char *name = q->dest[q->done++];
    if (s == NULL) {
        q->failed = 1;
    } else {
        json_t *d = json_object();
        json_object_set_new(d, "depth", json_integer(s->depth));
        json_object_set_new(d, "oldest_age_seconds",
                            json_real(state_outbox_oldest_age_s(s, (int64_t)state_now_ms())));
        json_object_set_new(d, "dead_letters", json_integer(s->dead_letters));
        int cio = strcmp(name, "customerio") == 0;
        json_object_set_new(d, "status",
                            json_string(cio ? svc_sync_status() : svc_intercom_status()));
        json_object_set_new(q->dests, name, d);
        svc_metrics_queue_stats(s, (void *)(uintptr_t)name);
    }
    if (q->done < q->n && !q->failed &&
        state_outbox_stats(q->call->env->store, q->dest[q->done], on_stats, q) == 0)
        return;
    if (q->failed || q->done < q->n) {
        api_kept_reply_error(q->call, 503, "unavailable", "the state store is unavailable");
    } else {
        json_t *o = json_object();
        json_object_set_new(o, "destinations", json_incref(q->dests));
        api_kept_reply_json(q->call, 200, o);
    }
    json_decref(q->dests);
    free(q);
}

static int start_queue(struct api_call *kept, const char *only) {
    struct queue_ctx *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return -1;
    q->call = kept;
    if (only != NULL) {
        q->dest[q->n++] = only;
    } else {
        q->dest[q->n++] = "customerio";
        q->dest[q->n++] = "intercom";
    }
    q->dests = json_object();
    if (state_outbox_stats(kept->env->store, q->dest[0], on_stats, q) < 0) {
        json_decref(q->dests);
        free(q);
        return -1;
    }
    return 0;
}

/* POST /v1/admin/backfill: answered once the run holds the lock (202), or could not
 * start (409 another run, 503 otherwise). The run goes on after the answer. */
static void on_backfill(enum svc_backfill_event ev, const char *message, void *arg) {
    struct api_call **slot = arg;
    struct api_call *call = *slot;
    if (call == NULL) {
        free(slot);
        return;
    }
    *slot = NULL;
    if (ev == SVC_BACKFILL_STARTED) {
        json_t *o = json_object();
        json_object_set_new(o, "status", json_string("started"));
        api_kept_reply_json(call, 202, o);
        return; /* the slot is freed with the final event */
    }
    if (strstr(message, "another backfill") != NULL)
        api_kept_reply_error(call, 409, "backfill_running", message);
    else if (strstr(message, "INTERCOM_ACCESS_TOKEN") != NULL)
        api_kept_reply_error(call, 409, "not_configured", message);
    else
        api_kept_reply_error(call, 503, "backfill_failed", message);
    free(slot);
}

static void on_backfill_status(json_t *status, void *arg) {
    on_json(status, arg);
}

static void on_resynced(int ok, void *arg) {
    struct api_call *call = arg;
    if (!ok) {
        api_kept_reply_error(call, 503, "unavailable", "the state store is unavailable");
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "queued", json_true());
    api_kept_reply_json(call, 200, o);
}

/* Keeps the call and runs `start`; answers 503 when it cannot start. */
#define KEEP_OR_503(call, kept, expr)                                                       \
    do {                                                                                    \
        struct api_call *kept = api_call_keep(call);                                        \
        if (kept == NULL || (expr) < 0) {                                                   \
            if (kept != NULL) {                                                             \
                (call)->env->inflight--;                                                    \
                free(kept);                                                                 \
            }                                                                               \
            api_reply_error(call, 503, "unavailable", "the state store is unavailable");    \
        }                                                                                   \
    } while (0)

void api_admin(struct api_call *call, const char *rest) {
    struct evhttp_request *req = call->req;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    struct state_store *st = call->env->store;
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    if (query != NULL && evhttp_parse_query_str(query, &params) < 0) {
        api_reply_error(call, 400, "invalid_request", "the query string is malformed");
        return;
    }
    const char *dest = destination_param(call, &params);
    if (dest == NULL)
        goto out;

    if (strcmp(rest, "queue") == 0) {
        if (cmd != EVHTTP_REQ_GET) {
            api_method_not_allowed(call, "GET");
            goto out;
        }
        const char *only = evhttp_find_header(&params, "destination") ? dest : NULL;
        KEEP_OR_503(call, kept, start_queue(kept, only));
    } else if (strcmp(rest, "backfill") == 0) {
        if (cmd == EVHTTP_REQ_GET) {
            KEEP_OR_503(call, kept, svc_backfill_status(st, on_backfill_status, kept));
        } else if (cmd == EVHTTP_REQ_POST) {
            if (call->env->cfg->intercom_token == NULL) {
                api_reply_error(call, 409, "not_configured",
                                "INTERCOM_ACCESS_TOKEN is not set: nothing to read from");
                goto out;
            }
            if (!state_store_ready(st)) {
                api_reply_error(call, 503, "unavailable", "the state store is unavailable");
                goto out;
            }
            if (call->env->backfill != NULL) {
                api_reply_error(call, 409, "backfill_running", "a backfill is already running");
                goto out;
            }
            const char *r = evhttp_find_header(&params, "restart");
            int restart = r != NULL && strcmp(r, "1") == 0;
            struct api_call **slot = malloc(sizeof(*slot));
            struct api_call *kept = slot ? api_call_keep(call) : NULL;
            if (kept == NULL) {
                free(slot);
                api_reply_error(call, 503, "unavailable", "out of memory");
                goto out;
            }
            *slot = kept;
            if (svc_backfill_start(call->env->base, st, call->env->curl, call->env->cfg, restart,
                                   on_backfill, slot, &call->env->backfill) == NULL) {
                call->env->inflight--;
                free(kept);
                free(slot);
                api_reply_error(call, 503, "unavailable", "out of memory");
            }
        } else {
            api_method_not_allowed(call, "GET, POST");
        }
    } else if (strcmp(rest, "dead-letters") == 0) {
        if (cmd != EVHTTP_REQ_GET) {
            api_method_not_allowed(call, "GET");
            goto out;
        }
        const char *lim = evhttp_find_header(&params, "limit");
        const char *cursor = evhttp_find_header(&params, "cursor");
        int limit = lim ? atoi(lim) : 50;
        if (limit < 1 || limit > 500) {
            api_reply_error(call, 400, "invalid_request", "limit must be 1 to 500");
            goto out;
        }
        if (cursor != NULL && !valid_stream_id(cursor)) {
            api_reply_error(call, 400, "invalid_request", "cursor is not a dead-letter id");
            goto out;
        }
        KEEP_OR_503(call, kept, state_outbox_dead_letters(st, dest, cursor, limit, on_json, kept));
    } else if (strcmp(rest, "dead-letters/replay") == 0) {
        if (cmd != EVHTTP_REQ_POST) {
            api_method_not_allowed(call, "POST");
            goto out;
        }
        KEEP_OR_503(call, kept, state_outbox_replay(st, dest, NULL, 1000, on_json, kept));
    } else if (strncmp(rest, "dead-letters/", 13) == 0 && strstr(rest + 13, "/replay") != NULL &&
               strcmp(strstr(rest + 13, "/replay"), "/replay") == 0) {
        if (cmd != EVHTTP_REQ_POST) {
            api_method_not_allowed(call, "POST");
            goto out;
        }
        char id[64];
        size_t n = (size_t)(strstr(rest + 13, "/replay") - (rest + 13));
        if (n >= sizeof(id)) {
            api_reply_error(call, 404, "not_found", "no dead letter with that id");
            goto out;
        }
        memcpy(id, rest + 13, n);
        id[n] = '\0';
        if (!valid_stream_id(id)) {
            api_reply_error(call, 404, "not_found", "no dead letter with that id");
            goto out;
        }
        KEEP_OR_503(call, kept, state_outbox_replay(st, dest, id, 1, on_replayed_one, kept));
    } else if (strncmp(rest, "users/", 6) == 0 && strlen(rest) > 13 &&
               strcmp(rest + strlen(rest) - 7, "/resync") == 0) {
        if (cmd != EVHTTP_REQ_POST) {
            api_method_not_allowed(call, "POST");
            goto out;
        }
        char *raw = strndup(rest + 6, strlen(rest) - 6 - 7);
        size_t idlen = 0;
        char *uid = raw ? evhttp_uridecode(raw, 0, &idlen) : NULL;
        free(raw);
        const char *why;
        if (uid == NULL) {
            api_reply_error(call, 503, "unavailable", "out of memory");
            goto out;
        }
        if (api_valid_user_id(uid, idlen, &why) < 0) {
            api_reply_error(call, 400, "invalid_user_id", why);
        } else if (strcmp(dest, "customerio") != 0) {
            api_reply_error(call, 400, "unknown_destination",
                            "resync writes Customer.io attributes: destination must be customerio");
        } else if (strncmp(uid, "intercom:", 9) == 0) {
            api_reply_error(call, 400, "invalid_user_id",
                            "intercom: identities are never written to Customer.io");
        } else {
            KEEP_OR_503(call, kept, state_outbox_resync(st, uid, on_resynced, kept));
        }
        free(uid);
    } else {
        api_reply_error(call, 404, "not_found", "no such admin endpoint");
    }
out:
    evhttp_clear_headers(&params);
}
