/* api_webhook: POST /webhooks/intercom and POST /webhooks/customerio.
 *
 * The Intercom path makes no outbound call: verify the signature over the raw body,
 * parse, record in Redis (state_apply), answer. 200 means the change is in Redis; a
 * duplicate, a ping or a topic we do not use also get 200 so Intercom stops retrying.
 * Never 410: Intercom disables a subscription that answers 410. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "api/api_http.h"
#include "api/api_intercom.h"
#include "api/api_sig.h"
#include "state/state_apply.h"
#include "svc/svc_log.h"

/* Seconds a user without open tickets is kept: the longest rule window plus a day, and
 * never less than the 30 days resolved tickets are remembered for reordering. */
static int64_t keep_seconds(const struct svc_config *cfg) {
    int64_t w = 30 * 86400;
    if (cfg->rules.priority_window > w)
        w = cfg->rules.priority_window;
    if (cfg->rules.csat_window > w)
        w = cfg->rules.csat_window;
    if (cfg->rules.churn_window > w)
        w = cfg->rules.churn_window;
    return w + 86400;
}

struct intercom_job {
    struct api_call *call;
    struct api_intercom_doc doc;
};

static void on_applied(enum state_apply_result result, void *arg) {
    struct intercom_job *job = arg;
    const char *topic = job->doc.chg.topic;
    if (result == STATE_APPLY_FAILED) {
        svc_metrics_webhook("intercom", topic, SVC_WH_UNAVAILABLE);
        api_kept_reply_error(job->call, 503, "unavailable",
                             "the state store failed while recording the notification; "
                             "retry later");
    } else {
        int dup = result == STATE_APPLY_DUPLICATE;
        svc_metrics_webhook("intercom", topic, dup ? SVC_WH_DUPLICATE : SVC_WH_APPLIED);
        json_t *o = json_object();
        json_object_set_new(o, "status", json_string(dup ? "duplicate" : "recorded"));
        api_kept_reply_json(job->call, 200, o);
    }
    api_intercom_free(&job->doc);
    free(job);
}

void api_webhook_intercom(struct api_call *call) {
    const struct svc_config *cfg = call->env->cfg;
    struct evhttp_request *req = call->req;
    char err[256];

    if (cfg->intercom_secret == NULL) {
        svc_metrics_webhook("intercom", NULL, SVC_WH_UNAVAILABLE);
        return api_reply_error(call, 503, "not_configured",
                               "INTERCOM_CLIENT_SECRET is not set: webhooks cannot be verified");
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
    const char *sig = evhttp_find_header(evhttp_request_get_input_headers(req),
                                         "X-Hub-Signature");
    enum api_sig_result sr = api_sig_intercom_verify(cfg->intercom_secret, sig, body, len);
    if (sr != API_SIG_OK) {
        svc_metrics_webhook("intercom", NULL, SVC_WH_UNAUTHORIZED);
        svc_log_warn("webhook_rejected", "source", json_string("intercom"),
                     "reason", json_string(api_sig_result_name(sr)), NULL);
        return api_reply_error(call, 401, "invalid_signature",
                               sr == API_SIG_MISSING
                                   ? "X-Hub-Signature header is missing"
                                   : sr == API_SIG_MALFORMED
                                         ? "X-Hub-Signature must be sha1= followed by 40 hex digits"
                                         : "X-Hub-Signature does not match the body");
    }

    struct intercom_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return api_reply_error(call, 503, "unavailable", "out of memory");
    struct api_intercom_opts opts = {(const char *const *)(const void *)cfg->churn_tags,
                                     cfg->nchurn_tags,
                                     (const char *const *)(const void *)cfg->profile_attrs,
                                     cfg->nprofile_attrs};
    if (api_intercom_parse(&job->doc, body, len, &opts, err, sizeof(err)) < 0) {
        svc_metrics_webhook("intercom", NULL, SVC_WH_INVALID);
        svc_log_warn("webhook_invalid", "source", json_string("intercom"),
                     "reason", json_string(err), NULL);
        api_intercom_free(&job->doc);
        free(job);
        return api_reply_error(call, 400, "invalid_notification", err);
    }
    if (job->doc.chg.kind == STATE_CHANGE_NONE) {
        svc_metrics_webhook("intercom", job->doc.known_topic ? job->doc.chg.topic : "unknown",
                            SVC_WH_IGNORED);
        json_t *o = json_object();
        json_object_set_new(o, "status", json_string("ignored"));
        api_intercom_free(&job->doc);
        free(job);
        return api_reply_json(call, 200, o);
    }

    struct state_apply_opts ao = {
        .now = (int64_t)time(NULL),
        .keep = keep_seconds(cfg),
        .link_ttl = 400 * 86400,   /* contact links outlive any window; refreshed on use */
        .index_ttl = 30 * 86400,   /* a closed ticket's owners, for a late delete */
    };
    job->call = api_call_keep(call);
    if (job->call == NULL ||
        state_apply(call->env->store, &job->doc.chg, &ao, on_applied, job) < 0) {
        if (job->call != NULL) {
            call->env->inflight--;
            free(job->call);
        }
        svc_metrics_webhook("intercom", job->doc.chg.topic, SVC_WH_UNAVAILABLE);
        api_intercom_free(&job->doc);
        free(job);
        return api_reply_error(call, 503, "unavailable",
                               "the state store is unavailable; retry later");
    }
}

void api_webhook_customerio(struct api_call *call) {
    const struct svc_config *cfg = call->env->cfg;
    if (cfg->cio_webhook_key == NULL) {
        svc_metrics_webhook("customerio", NULL, SVC_WH_UNAVAILABLE);
        return api_reply_error(call, 503, "not_configured",
                               "CIO_WEBHOOK_SIGNING_KEY is not set: webhooks cannot be verified");
    }
    struct evhttp_request *req = call->req;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    enum api_sig_result sr =
        api_sig_cio_verify(cfg->cio_webhook_key, evhttp_find_header(h, "X-CIO-Timestamp"),
                           evhttp_find_header(h, "X-CIO-Signature"), body, len);
    if (sr != API_SIG_OK) {
        svc_metrics_webhook("customerio", NULL, SVC_WH_UNAUTHORIZED);
        return api_reply_error(call, 401, "invalid_signature",
                               "X-CIO-Signature does not match X-CIO-Timestamp and the body");
    }
    /* Forwarding to Intercom is not built yet (issue 4); refuse rather than drop. */
    svc_metrics_webhook("customerio", NULL, SVC_WH_UNAVAILABLE);
    api_reply_error(call, 503, "not_implemented",
                    "forwarding Customer.io events to Intercom is not available yet");
}
