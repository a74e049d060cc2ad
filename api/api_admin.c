/* api_admin: the operator API under /v1/admin/ (the same Bearer auth as the query API).
 *
 *   GET  /v1/admin/queue                              depth, oldest age, dead letters, status
 *   GET  /v1/admin/dead-letters?limit=&cursor=        dead letters, newest first, paged
 *   POST /v1/admin/dead-letters/replay                requeue all (up to 1000 per call)
 *   POST /v1/admin/dead-letters/{id}/replay           requeue one
 *   POST /v1/admin/users/{id}/resync                  queue a fresh identify now
 *
 * Destinations: "customerio" (the default, ?destination=). */
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/keyvalq_struct.h>

#include "api/api_http.h"
#include "state/state_outbox.h"
#include "state/state_ulid.h"
#include "svc/svc_sync.h"

static const char *destination_param(struct api_call *call, struct evkeyvalq *params) {
    const char *d = evhttp_find_header(params, "destination");
    if (d == NULL || strcmp(d, "customerio") == 0)
        return "customerio";
    api_reply_error(call, 400, "unknown_destination", "destination must be customerio");
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

static void on_stats(const struct state_outbox_stats *s, void *arg) {
    struct api_call *call = arg;
    if (s == NULL) {
        api_kept_reply_error(call, 503, "unavailable", "the state store is unavailable");
        return;
    }
    int64_t now = (int64_t)state_now_ms();
    json_t *o = json_object(), *dests = json_object(), *d = json_object();
    json_object_set_new(d, "depth", json_integer(s->depth));
    /* Due times of leased users lie in the future; only past-due work has an age. */
    json_object_set_new(d, "oldest_age_seconds",
                        json_real(s->oldest_due_ms > 0 && s->oldest_due_ms < now
                                      ? (double)(now - s->oldest_due_ms) / 1000.0
                                      : 0.0));
    json_object_set_new(d, "dead_letters", json_integer(s->dead_letters));
    json_object_set_new(d, "status", json_string(svc_sync_status()));
    json_object_set_new(dests, "customerio", d);
    json_object_set_new(o, "destinations", dests);
    svc_metrics_gauge_set("suppressd_queue_depth", "Users waiting for a write, by destination.",
                          "destination=\"customerio\"", (double)s->depth);
    svc_metrics_gauge_set("suppressd_dead_letters", "Dead letters stored, by destination.",
                          "destination=\"customerio\"", (double)s->dead_letters);
    api_kept_reply_json(call, 200, o);
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
        KEEP_OR_503(call, kept, state_outbox_stats(st, dest, on_stats, kept));
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
