/* api_http: router, JSON answers and auth. See api_http.h. */
#include "api/api_http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>

#include "svc/svc_log.h"
#include "svc/svc_intercom.h"
#include "svc/svc_sync.h"

uint64_t api_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static const char *reason_phrase(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return NULL;
    }
}

static void send_body(const struct api_call *call, int status, const char *ctype,
                      const char *data, size_t len) {
    struct evhttp_request *req = call->req;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "Cache-Control", "no-store");
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
        evbuffer_add(buf, data, len);
    evhttp_send_reply(req, status, reason_phrase(status), buf);
    evbuffer_free(buf);
    svc_metrics_http(call->route, status, api_now_us() - call->start_us);
}

void api_reply_json(const struct api_call *call, int status, json_t *body) {
    char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    if (text == NULL) {
        static const char oom[] = "{\"error\":\"internal\",\"message\":\"out of memory\"}";
        send_body(call, 500, "application/json", oom, sizeof(oom) - 1);
        return;
    }
    size_t len = strlen(text);
    text[len] = '\n'; /* a trailing newline makes curl output readable */
    send_body(call, status, "application/json", text, len + 1);
    free(text);
}

void api_reply_error(const struct api_call *call, int status, const char *code,
                     const char *message) {
    json_t *o = json_object();
    json_object_set_new(o, "error", json_string(code));
    /* Messages can quote client input; json_string refuses invalid UTF-8, so fall back. */
    json_t *m = json_string(message);
    json_object_set_new(o, "message", m ? m : json_string("(message not representable)"));
    api_reply_json(call, status, o);
}

struct api_call *api_call_keep(const struct api_call *call) {
    struct api_call *kept = malloc(sizeof(*kept));
    if (kept == NULL)
        return NULL;
    *kept = *call;
    kept->env->inflight++;
    return kept;
}

void api_kept_reply_json(struct api_call *call, int status, json_t *body) {
    call->env->inflight--;
    api_reply_json(call, status, body);
    free(call);
}

void api_kept_reply_text(struct api_call *call, int status, const char *json, size_t len) {
    call->env->inflight--;
    send_body(call, status, "application/json", json, len);
    free(call);
}

void api_kept_reply_error(struct api_call *call, int status, const char *code,
                          const char *message) {
    call->env->inflight--;
    api_reply_error(call, status, code, message);
    free(call);
}

int api_authorized(const struct api_env *env, struct evhttp_request *req) {
    const struct svc_config *cfg = env->cfg;
    if (cfg->ntokens == 0)
        return 1;
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req),
                                          "Authorization");
    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
        return 0;
    const char *tok = auth + 7;
    while (*tok == ' ')
        tok++;
    size_t len = strlen(tok);
    int ok = 0;
    /* Check every token (no early exit) so timing says nothing about which matched. */
    for (size_t i = 0; i < cfg->ntokens; i++) {
        size_t tlen = strlen(cfg->api_tokens[i]);
        if (tlen == len && CRYPTO_memcmp(cfg->api_tokens[i], tok, len) == 0)
            ok = 1;
    }
    return ok;
}

/* Checks strict UTF-8 (no overlongs, surrogates or code points above U+10FFFF). */
static int valid_utf8(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

int api_valid_user_id(const char *id, size_t len, const char **why) {
    if (len == 0) {
        *why = "user id is empty";
        return -1;
    }
    if (len > 256) {
        *why = "user id is longer than 256 bytes";
        return -1;
    }
    if (memchr(id, '\0', len) != NULL) {
        *why = "user id contains a NUL byte";
        return -1;
    }
    if (!valid_utf8((const unsigned char *)id, len)) {
        *why = "user id is not valid UTF-8";
        return -1;
    }
    return 0;
}

/*---------------------------------------------------------------------------
 * Small endpoints
 *--------------------------------------------------------------------------*/

static void handle_health(struct api_call *call) {
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string("ok"));
    api_reply_json(call, 200, o);
}

static void handle_ready(struct api_call *call) {
    const char *redis = state_store_status(call->env->store);
    int ready = state_store_ready(call->env->store);
    json_t *o = json_object();
    json_t *checks = json_object();
    json_object_set_new(checks, "redis", json_string(redis));
    /* Reported, not gating: a Customer.io credential problem must not take the query API
     * out of the load balancer. */
    json_object_set_new(checks, "customerio", json_string(svc_sync_status()));
    json_object_set_new(checks, "intercom", json_string(svc_intercom_status()));
    if (ready) {
        json_object_set_new(o, "status", json_string("ready"));
    } else {
        char msg[300];
        snprintf(msg, sizeof(msg), "redis: %s", redis);
        json_object_set_new(o, "error", json_string("not_ready"));
        json_object_set_new(o, "message", json_string(msg));
    }
    json_object_set_new(o, "checks", checks);
    api_reply_json(call, ready ? 200 : 503, o);
}

static void handle_metrics(struct api_call *call) {
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL) {
        api_reply_error(call, 500, "internal", "out of memory");
        return;
    }
    svc_metrics_render(buf);
    size_t len = evbuffer_get_length(buf);
    send_body(call, 200, "text/plain; version=0.0.4; charset=utf-8",
              (const char *)evbuffer_pullup(buf, -1), len);
    evbuffer_free(buf);
}

void api_method_not_allowed(struct api_call *call, const char *allow) {
    evhttp_add_header(evhttp_request_get_output_headers(call->req), "Allow", allow);
    char msg[80];
    snprintf(msg, sizeof(msg), "this endpoint accepts %s", allow);
    api_reply_error(call, 405, "method_not_allowed", msg);
}

/* Routes one request. Methods are all allowed at the evhttp level (it would answer 501
 * for the others) so that this function can answer 405 with an Allow header. */
void api_handle(struct evhttp_request *req, void *arg) {
    struct api_env *env = arg;
    struct api_call call = {req, env, SVC_ROUTE_OTHER, api_now_us()};
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (path == NULL || *path == '\0')
        path = "/";

    if (strcmp(path, "/healthz") == 0) {
        call.route = SVC_ROUTE_HEALTH;
        if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD)
            return api_method_not_allowed(&call, "GET, HEAD");
        return handle_health(&call);
    }
    if (strcmp(path, "/readyz") == 0) {
        call.route = SVC_ROUTE_READY;
        if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD)
            return api_method_not_allowed(&call, "GET, HEAD");
        return handle_ready(&call);
    }
    if (strcmp(path, "/metrics") == 0) {
        call.route = SVC_ROUTE_METRICS;
        if (cmd != EVHTTP_REQ_GET)
            return api_method_not_allowed(&call, "GET");
        return handle_metrics(&call);
    }
    if (strcmp(path, "/webhooks/intercom") == 0) {
        call.route = SVC_ROUTE_WEBHOOK_INTERCOM;
        if (cmd == EVHTTP_REQ_HEAD) {
            /* Intercom's URL check when a subscription is saved. */
            evhttp_send_reply(req, 200, "OK", NULL);
            svc_metrics_http(call.route, 200, api_now_us() - call.start_us);
            return;
        }
        if (cmd != EVHTTP_REQ_POST)
            return api_method_not_allowed(&call, "POST, HEAD");
        return api_webhook_intercom(&call);
    }
    if (strcmp(path, "/webhooks/customerio") == 0) {
        call.route = SVC_ROUTE_WEBHOOK_CUSTOMERIO;
        if (cmd != EVHTTP_REQ_POST)
            return api_method_not_allowed(&call, "POST");
        return api_webhook_customerio(&call);
    }
    if (strncmp(path, "/v1/", 4) == 0) {
        const char *rest = path + 4;
        if (strcmp(rest, "suppression/check") == 0) {
            call.route = SVC_ROUTE_CHECK;
            if (cmd != EVHTTP_REQ_POST)
                return api_method_not_allowed(&call, "POST");
            if (!api_authorized(env, req))
                return api_reply_error(&call, 401, "unauthorized",
                                       "missing or invalid Authorization: Bearer token");
            return api_query_check(&call);
        }
        if (strncmp(rest, "admin/", 6) == 0) {
            call.route = SVC_ROUTE_ADMIN;
            if (!api_authorized(env, req))
                return api_reply_error(&call, 401, "unauthorized",
                                       "missing or invalid Authorization: Bearer token");
            return api_admin(&call, rest + 6);
        }
        if (strncmp(rest, "users/", 6) == 0) {
            const char *seg = rest + 6;
            const char *slash = strchr(seg, '/');
            size_t seglen = slash ? (size_t)(slash - seg) : strlen(seg);
            int suppression = 0;
            if (slash != NULL) {
                if (strcmp(slash, "/suppression") != 0)
                    goto not_found;
                suppression = 1;
            }
            call.route = suppression ? SVC_ROUTE_SUPPRESSION : SVC_ROUTE_USER;
            if (cmd != EVHTTP_REQ_GET)
                return api_method_not_allowed(&call, "GET");
            if (!api_authorized(env, req))
                return api_reply_error(&call, 401, "unauthorized",
                                       "missing or invalid Authorization: Bearer token");
            char *raw = strndup(seg, seglen);
            size_t idlen = 0;
            /* Paths are percent-decoded ("+" stays "+": it is not a space in a path). */
            char *id = raw ? evhttp_uridecode(raw, 0, &idlen) : NULL;
            free(raw);
            const char *why = NULL;
            if (id == NULL)
                return api_reply_error(&call, 500, "internal", "out of memory");
            if (api_valid_user_id(id, idlen, &why) < 0) {
                api_reply_error(&call, 400, "invalid_user_id", why);
                free(id);
                return;
            }
            api_query_user(&call, id, suppression);
            free(id);
            return;
        }
    }
not_found:
    api_reply_error(&call, 404, "not_found", "no such endpoint");
}

/*---------------------------------------------------------------------------
 * Errors evhttp raises itself
 *--------------------------------------------------------------------------*/

/* libevent 2.1 answers some requests before any callback of ours runs: a body over
 * evhttp_set_max_body_size (413), a malformed request line or headers (400). It does so
 * through evhttp_send_error(), which writes an HTML page, and 2.1 offers no hook to
 * change that (2.2 adds evhttp_set_errorcb). libevent calls evhttp_send_error through
 * its PLT, so this definition in the executable takes its place, and those answers keep
 * the contract's JSON error shape too. It keeps the original's behaviour otherwise: the
 * status, and "Connection: close". */
void evhttp_send_error(struct evhttp_request *req, int error, const char *reason) {
    const char *code = error == 413   ? "payload_too_large"
                       : error == 400 ? "bad_request"
                       : error == 404 ? "not_found"
                       : error == 405 || error == 501 ? "method_not_allowed"
                       : error >= 500 ? "internal"
                                      : "bad_request";
    const char *message = error == 413 ? "request body is larger than 1 MiB"
                          : reason     ? reason
                          : error == 400 ? "malformed HTTP request"
                                         : "request refused";
    json_t *o = json_object();
    json_object_set_new(o, "error", json_string(code));
    json_object_set_new(o, "message", json_string(message));
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    struct evbuffer *buf = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_clear_headers(h);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Connection", "close");
    if (buf != NULL && text != NULL)
        evbuffer_add_printf(buf, "%s\n", text);
    free(text);
    evhttp_send_reply(req, error, reason_phrase(error) ? reason_phrase(error) : reason, buf);
    if (buf != NULL)
        evbuffer_free(buf);
    if (error == 413)
        svc_metrics_http(SVC_ROUTE_OTHER, 413, 0);
}
