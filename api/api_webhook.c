/* api_webhook: POST /webhooks/intercom and POST /webhooks/customerio.
 *
 * The Intercom path makes no outbound call: verify the signature over the raw body,
 * parse, record in Redis (state_apply), answer. 200 means the change is in Redis; a
 * duplicate, a ping or a topic we do not use also get 200 so Intercom stops retrying.
 * Never 410: Intercom disables a subscription that answers 410.
 *
 * The Customer.io path is the same shape: verify, parse, queue an Intercom job in Redis
 * (deduplicated by event_id), answer; the Intercom worker sends it later. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "api/api_http.h"
#include "api/api_intercom.h"
#include "api/api_sig.h"
#include "api/api_customerio.h"
#include "state/state_apply.h"
#include "state/state_jobs.h"
#include "svc/svc_intercom.h"
#include "svc/svc_log.h"

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

    struct state_apply_opts ao;
    svc_intercom_apply_opts(cfg, &ao);
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

struct cio_job {
    struct api_call *call;
    char event_id[128];
    char kind[100];
};

static void on_cio_queued(const char *status, void *arg) {
    struct cio_job *job = arg;
    if (status == NULL) {
        svc_metrics_webhook("customerio", job->kind, SVC_WH_UNAVAILABLE);
        api_kept_reply_error(job->call, 503, "unavailable",
                             "the state store failed while queueing the event; retry later");
    } else {
        int dup = strcmp(status, "duplicate") == 0;
        svc_metrics_webhook("customerio", job->kind, dup ? SVC_WH_DUPLICATE : SVC_WH_APPLIED);
        json_t *o = json_object();
        json_object_set_new(o, "status", json_string(dup ? "duplicate" : "queued"));
        api_kept_reply_json(job->call, 200, o);
    }
    free(job);
}

/* Customer.io stalls its whole webhook stream for an hour after any non-2xx answer, so
 * only a bad signature, a malformed body or an unavailable store get one. Metrics the
 * service does not forward and people without an id are acknowledged and counted. */
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
    const char *ts = evhttp_find_header(h, "X-CIO-Timestamp");
    enum api_sig_result sr =
        api_sig_cio_verify(cfg->cio_webhook_key, ts, evhttp_find_header(h, "X-CIO-Signature"),
                           body, len);
    if (sr != API_SIG_OK) {
        svc_metrics_webhook("customerio", NULL, SVC_WH_UNAUTHORIZED);
        svc_log_warn("webhook_rejected", "source", json_string("customerio"),
                     "reason", json_string(api_sig_result_name(sr)), NULL);
        return api_reply_error(call, 401, "invalid_signature",
                               sr == API_SIG_MISSING
                                   ? "X-CIO-Signature or X-CIO-Timestamp header is missing"
                                   : "X-CIO-Signature does not match X-CIO-Timestamp and the body");
    }
    if (cfg->cio_webhook_max_age > 0) {
        long long t = strtoll(ts, NULL, 10), now = (long long)time(NULL);
        if (t < now - cfg->cio_webhook_max_age || t > now + cfg->cio_webhook_max_age) {
            svc_metrics_webhook("customerio", NULL, SVC_WH_UNAUTHORIZED);
            svc_log_warn("webhook_rejected", "source", json_string("customerio"),
                         "reason", json_string("stale_timestamp"),
                         "timestamp", json_integer(t), NULL);
            return api_reply_error(call, 401, "stale_timestamp",
                                   "X-CIO-Timestamp is further from now than CIO_WEBHOOK_MAX_AGE");
        }
    }

    struct api_cio_event ev;
    char why[256];
    enum api_cio_verdict v = api_cio_parse(body, len, cfg, &ev, why, sizeof(why));
    if (v == API_CIO_INVALID) {
        svc_metrics_webhook("customerio", NULL, SVC_WH_INVALID);
        svc_log_warn("webhook_invalid", "source", json_string("customerio"),
                     "reason", json_string(why), NULL);
        return api_reply_error(call, 400, "invalid_event", why);
    }
    char kind[100];
    snprintf(kind, sizeof(kind), "%s_%s", ev.object_type, ev.metric);
    if (v == API_CIO_IGNORE) {
        svc_metrics_webhook("customerio", kind, SVC_WH_IGNORED);
        svc_log_debug("cio_webhook_ignored", "event_id", json_string(ev.event_id),
                      "reason", json_string(why), NULL);
        json_t *o = json_object();
        json_object_set_new(o, "status", json_string("ignored"));
        json_object_set_new(o, "reason", json_string(why));
        return api_reply_json(call, 200, o);
    }

    json_t *rec = json_object();
    json_object_set_new(rec, "t", json_string("event"));
    json_object_set_new(rec, "event", ev.event);
    char *record = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(rec);
    char job_id[140];
    snprintf(job_id, sizeof(job_id), "e:%s", ev.event_id);
    struct cio_job *job = calloc(1, sizeof(*job));
    if (job == NULL || record == NULL) {
        free(job);
        free(record);
        return api_reply_error(call, 503, "unavailable", "out of memory");
    }
    snprintf(job->kind, sizeof(job->kind), "%s", kind);
    job->call = api_call_keep(call);
    /* Seven days of event ids: Customer.io retries a webhook for up to seven days. */
    if (job->call == NULL ||
        state_jobs_add(call->env->store, job_id, record, 7 * 86400, on_cio_queued, job) < 0) {
        if (job->call != NULL) {
            call->env->inflight--;
            free(job->call);
        }
        free(job);
        free(record);
        svc_metrics_webhook("customerio", kind, SVC_WH_UNAVAILABLE);
        return api_reply_error(call, 503, "unavailable",
                               "the state store is unavailable; retry later");
    }
    free(record);
}
