/* svc_intercom: the Intercom worker. See svc_intercom.h. */
#include "svc/svc_intercom.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "api/api_intercom.h"
#include "state/state_apply.h"
#include "state/state_jobs.h"
#include "state/state_keys.h"
#include "state/state_outbox.h"
#include "state/state_ulid.h"
#include "svc/svc_cio.h"
#include "svc/svc_log.h"
#include "svc/svc_metrics.h"

#define PARTITIONS_PER_ROUND 8
#define JOBS_PER_PARTITION 25
#define IDLE_MS 250
#define RESPONSE_KEEP 2048
#define RECONCILE_MAX_PER_BUCKET 8 /* x STATE_BUCKETS per partition and interval */
#define SWEEP_INTERVAL_S 3600         /* when reconciliation is off, pruning still runs */

/*---------------------------------------------------------------------------
 * Process-wide status (one Intercom app for every loop)
 *--------------------------------------------------------------------------*/

static atomic_int paused;
static atomic_int probe_inflight;
static atomic_llong next_probe_ms;
static atomic_int dry_run = -1;
static char pause_reason[160];
static _Thread_local char status_buf[200];

const char *svc_intercom_status(void) {
    int dry = atomic_load(&dry_run);
    if (dry == 1)
        return "dry_run";
    if (dry < 0)
        return "starting";
    if (atomic_load(&paused)) {
        snprintf(status_buf, sizeof(status_buf), "unauthorized: %s", pause_reason);
        return status_buf;
    }
    return "live";
}

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *const *svc_intercom_headers(const struct svc_config *cfg) {
    static _Thread_local char auth[1024], version[96];
    static _Thread_local const char *h[5];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
             cfg->intercom_token ? cfg->intercom_token : "");
    snprintf(version, sizeof(version), "Intercom-Version: %s", cfg->intercom_version);
    h[0] = auth;
    h[1] = version;
    h[2] = "Content-Type: application/json";
    h[3] = "Accept: application/json";
    h[4] = NULL;
    return h;
}

/* Intercom spreads its per-minute limit over 10-second windows (a sixth each). */
int svc_intercom_window_budget(const struct svc_config *cfg) {
    int b = cfg->intercom_rate_limit / 6;
    return b < 1 ? 1 : b;
}

void svc_intercom_apply_opts(const struct svc_config *cfg, struct state_apply_opts *o) {
    /* A user without open tickets is kept for the longest rule window plus a day, and
     * never less than the 30 days resolved tickets are remembered for reordering. */
    int64_t w = 30 * 86400;
    if (cfg->rules.priority_window > w)
        w = cfg->rules.priority_window;
    if (cfg->rules.csat_window > w)
        w = cfg->rules.csat_window;
    if (cfg->rules.churn_window > w)
        w = cfg->rules.churn_window;
    memset(o, 0, sizeof(*o));
    o->now = (int64_t)time(NULL);
    o->keep = w + 86400;
    o->link_ttl = 400 * 86400;   /* contact links outlive any window (the sweep drops them
                                    after this long unused) */
    o->index_ttl = 30 * 86400;   /* a closed ticket's owners, for a late delete */
    o->lookup_ttl = cfg->lookup_ttl;
}

#define M_REQ "suppressd_intercom_requests_total"
#define M_REQ_HELP "Requests to Intercom's REST API by job type and outcome."
#define M_JOB "suppressd_intercom_jobs_total"
#define M_JOB_HELP "Intercom jobs (forwarded events, contact look-ups, ticket re-checks) by outcome."

static void count(const char *family, const char *help, const char *type, const char *outcome,
                  uint64_t n) {
    char labels[96];
    snprintf(labels, sizeof(labels), "type=\"%s\",outcome=\"%s\"", type, outcome);
    svc_metrics_counter_add(family, help, labels, n);
}

/*---------------------------------------------------------------------------
 * Jobs
 *--------------------------------------------------------------------------*/

struct svc_intercom;

enum job_type { J_EVENT, J_LOOKUP, J_RECONCILE, J_BAD };

struct job {
    struct svc_intercom *w;
    struct job *prev, *next;
    char *id;
    json_t *rec;
    enum job_type type;
    const char *type_name;
    const char *method;
    char *url;
    char *body;
    struct event *wait_ev;
    int in_curl;
    int64_t lease_until_ms;     /* after this another worker may take the job */

    /* outcome */
    int retry, uncounted;
    int64_t not_before_ms;
    char *dead_reason;
    long status;
    char *response;

    /* look-ups and re-checks apply what Intercom answered */
    struct api_intercom_doc doc;
    struct state_change link;
    char *link_contact, *link_user;
    int applying;
};

struct svc_intercom {
    struct event_base *base;
    struct state_store *store;
    struct svc_curl *curl;
    const struct svc_config *cfg;
    int index;
    int dry;
    struct event *tick;
    struct event *reconcile_ev;
    struct event *stats_ev;
    unsigned next_partition;
    unsigned empty_partitions;
    int leasing;
    int stopping;
    int active;                 /* jobs in flight */
    struct job *head;
    unsigned long seq;
};

static void schedule(struct svc_intercom *w, int ms);
static void job_report(struct job *j);

static void job_free(struct job *j) {
    struct svc_intercom *w = j->w;
    if (j->prev)
        j->prev->next = j->next;
    else
        w->head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    w->active--;
    free(j->id);
    json_decref(j->rec);
    free(j->url);
    free(j->body);
    if (j->wait_ev)
        event_free(j->wait_ev);
    free(j->dead_reason);
    free(j->response);
    api_intercom_free(&j->doc);
    free(j->link_contact);
    free(j->link_user);
    free(j);
    if (w->active == 0 && !w->leasing)
        schedule(w, 0);
}

static void job_dead(struct job *j, const char *reason, long status, const char *response) {
    free(j->dead_reason);
    j->dead_reason = strdup(reason);
    j->status = status;
    free(j->response);
    size_t n = response ? strlen(response) : 0;
    j->response = strndup(response ? response : "", n < RESPONSE_KEEP ? n : RESPONSE_KEEP);
}

/* Intercom refused the request for good (a 4xx other than the ones handled). */
static void job_rejected(struct job *j, long status, const char *response) {
    char reason[64];
    snprintf(reason, sizeof(reason), "rejected: HTTP %ld", status);
    job_dead(j, reason, status, response);
}

static char *url_for(const struct svc_config *cfg, const char *path) {
    size_t n = strlen(cfg->intercom_api_url) + strlen(path) + 1;
    char *u = malloc(n);
    if (u == NULL)
        abort();
    snprintf(u, n, "%s%s", cfg->intercom_api_url, path);
    return u;
}

/* Builds the request of a job from its record. Returns 0, or -1 (record unusable). */
static int job_build(struct job *j) {
    const char *t = json_string_value(json_object_get(j->rec, "t"));
    char path[1024];
    if (t != NULL && strcmp(t, "event") == 0 && json_is_object(json_object_get(j->rec, "event"))) {
        j->type = J_EVENT;
        j->type_name = "event";
        j->method = "POST";
        j->url = url_for(j->w->cfg, "/events");
        j->body = json_dumps(json_object_get(j->rec, "event"), JSON_COMPACT | JSON_PRESERVE_ORDER);
        return j->body ? 0 : -1;
    }
    const char *key = NULL;
    if (t != NULL && strcmp(t, "lookup") == 0) {
        j->type = J_LOOKUP;
        j->type_name = "lookup";
        key = json_string_value(json_object_get(j->rec, "contact"));
        snprintf(path, sizeof(path), "/contacts/");
    } else if (t != NULL && strcmp(t, "reconcile") == 0) {
        j->type = J_RECONCILE;
        j->type_name = "reconcile";
        key = json_string_value(json_object_get(j->rec, "ticket"));
        const char *kind = json_string_value(json_object_get(j->rec, "kind"));
        snprintf(path, sizeof(path), kind && strcmp(kind, "t") == 0 ? "/tickets/" : "/conversations/");
    } else {
        j->type = J_BAD;
        j->type_name = "unknown";
        return -1;
    }
    if (key == NULL || *key == '\0')
        return -1;
    char *esc = cio_path_escape(key);
    if (esc == NULL)
        return -1;
    strncat(path, esc, sizeof(path) - strlen(path) - 1);
    free(esc);
    j->method = "GET";
    j->url = url_for(j->w->cfg, path);
    return 0;
}

/*---------------------------------------------------------------------------
 * Applying look-up and re-check answers
 *--------------------------------------------------------------------------*/

static void on_applied(enum state_apply_result result, void *arg) {
    struct job *j = arg;
    j->applying = 0;
    if (result == STATE_APPLY_FAILED)
        j->retry = 1;
    job_report(j);
}

static void apply_change(struct job *j, const struct state_change *chg) {
    struct state_apply_opts o;
    svc_intercom_apply_opts(j->w->cfg, &o);
    j->applying = 1;
    if (state_apply(j->w->store, chg, &o, on_applied, j) < 0) {
        j->applying = 0;
        j->retry = 1;
        job_report(j);
    }
}

/* GET /contacts/{id} answered: a user with an external_id gets linked (its state moves
 * from intercom:<id>); a lead or a contact without one stays as it is. */
static void lookup_answered(struct job *j, const char *body, size_t len) {
    json_t *c = json_loadb(body, len, 0, NULL);
    const char *ext = json_string_value(json_object_get(c, "external_id"));
    const char *role = json_string_value(json_object_get(c, "role"));
    const char *cid = json_string_value(json_object_get(j->rec, "contact"));
    if (ext == NULL || *ext == '\0' || strlen(ext) > API_INTERCOM_ID_MAX ||
        (role != NULL && strcmp(role, "lead") == 0)) {
        svc_log_debug("intercom_lookup_no_user", "contact_id", json_string(cid),
                      "role", json_string(role ? role : "unknown"), NULL);
        json_decref(c);
        job_report(j);
        return;
    }
    j->link_contact = strdup(cid);
    j->link_user = strdup(ext);
    json_decref(c);
    memset(&j->link, 0, sizeof(j->link));
    j->link.kind = STATE_CHANGE_CONTACT;
    j->link.topic = "suppressd.lookup";
    j->link.event_at = (int64_t)time(NULL);
    j->link.ncontacts = 1;
    j->link.contacts[0].contact_id = j->link_contact;
    j->link.contacts[0].external_id = j->link_user;
    j->link.role = "user";
    /* Empty dedupe: the link is idempotent, and a repeated look-up must still link. */
    svc_log_info("intercom_contact_linked", "contact_id", json_string(j->link_contact),
                 "user_id", json_string(j->link_user), NULL);
    apply_change(j, &j->link);
}

static void reconcile_answered(struct job *j, long status, const char *body, size_t len) {
    const struct svc_config *cfg = j->w->cfg;
    char err[256];
    if (status == 404) {
        /* Gone from Intercom: deleted. Nothing newer can ever arrive for it. */
        memset(&j->link, 0, sizeof(j->link));
        j->link.kind = STATE_CHANGE_TICKET_DELETED;
        j->link.topic = "suppressd.reconcile";
        j->link.event_at = (int64_t)time(NULL);
        j->link.ticket_id = json_string_value(json_object_get(j->rec, "ticket"));
        svc_log_info("intercom_reconcile_deleted", "ticket_id", json_string(j->link.ticket_id),
                     NULL);
        count(M_JOB, M_JOB_HELP, "reconcile", "deleted", 1);
        apply_change(j, &j->link);
        return;
    }
    json_t *obj = json_loadb(body, len, 0, NULL);
    struct api_intercom_opts opts = {(const char *const *)(const void *)cfg->churn_tags,
                                     cfg->nchurn_tags, NULL, 0};
    int rc = api_intercom_parse_object(&j->doc, obj, "reconcile", &opts, err, sizeof(err));
    json_decref(obj);
    if (rc < 0 || j->doc.chg.kind != STATE_CHANGE_TICKET) {
        job_dead(j, rc < 0 ? err : "unexpected answer", status, body);
        job_report(j);
        return;
    }
    int open = j->doc.chg.ticket_state == STATE_TICKET_OPEN ||
               j->doc.chg.ticket_state == STATE_TICKET_SNOOZED;
    count(M_JOB, M_JOB_HELP, "reconcile", open ? "still_open" : "closed", 1);
    if (!open)
        svc_log_info("intercom_reconcile_closed", "ticket_id", json_string(j->doc.chg.ticket_id),
                     NULL);
    apply_change(j, &j->doc.chg);
}

/*---------------------------------------------------------------------------
 * Sending
 *--------------------------------------------------------------------------*/

static void pause_delivery(const char *why) {
    if (!atomic_exchange(&paused, 1)) {
        snprintf(pause_reason, sizeof(pause_reason), "%s", why);
        svc_log_error("intercom_unauthorized", "message",
                      json_string("Intercom refused the access token; its jobs pause until a "
                                  "probe succeeds (check INTERCOM_ACCESS_TOKEN, INTERCOM_REGION)"),
                      "detail", json_string(why), NULL);
    }
}

static void on_response(const struct svc_http_result *res, void *arg) {
    struct job *j = arg;
    long status = res->status;
    const char *outcome;
    j->in_curl = 0;
    if (status == 401 || status == 403) {
        outcome = "unauthorized";
        char why[96];
        snprintf(why, sizeof(why), "HTTP %ld from %s %s", status, j->method, j->url);
        pause_delivery(why);
        j->retry = 1;
        j->uncounted = 1;
        j->not_before_ms = (int64_t)state_now_ms() + j->w->cfg->sync_probe_ms;
    } else if (status == 429) {
        outcome = "rate_limited";
        j->retry = 1;
        j->uncounted = 1;
        int64_t reset = res->ratelimit_reset > 0 ? res->ratelimit_reset * 1000
                        : res->retry_after >= 0 ? (int64_t)state_now_ms() + res->retry_after * 1000
                                                : (int64_t)state_now_ms() + SVC_INTERCOM_WINDOW_MS;
        j->not_before_ms = reset;
    } else if (status == 0 || status == 408 || status >= 500) {
        outcome = status == 0 ? "network_error" : "server_error";
        if (status == 0)
            svc_log_warn("intercom_request_failed", "url", json_string(j->url),
                         "error", json_string(res->error ? res->error : "unknown"), NULL);
        j->retry = 1;
    } else if (status >= 200 && status < 300) {
        outcome = "ok";
    } else if (status == 404) {
        outcome = "not_found";
    } else {
        outcome = "rejected";
    }
    count(M_REQ, M_REQ_HELP, j->type_name, outcome, 1);
    if (j->retry) {
        job_report(j);
        return;
    }
    switch (j->type) {
    case J_EVENT:
        if (status == 404)
            job_dead(j, "unknown_user: Intercom has no user with this user_id", status, res->body);
        else if (status >= 300)
            job_rejected(j, status, res->body);
        job_report(j);
        return;
    case J_LOOKUP:
        if (status >= 200 && status < 300) {
            lookup_answered(j, res->body, res->body_len);
            return;
        }
        if (status != 404)
            job_rejected(j, status, res->body);
        job_report(j);
        return;
    case J_RECONCILE:
        if ((status >= 200 && status < 300) || status == 404) {
            reconcile_answered(j, status, res->body, res->body_len);
            return;
        }
        job_rejected(j, status, res->body);
        job_report(j);
        return;
    default:
        job_report(j);
    }
}

static void send_job(struct job *j);

static void on_rate_wait(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    send_job(arg);
}

static void on_rate(long wait_ms, void *arg) {
    struct job *j = arg;
    struct svc_intercom *w = j->w;
    if (wait_ms < 0) {
        j->retry = 1;
        j->uncounted = 1;
        job_report(j);
        return;
    }
    if (wait_ms > 0 && (int64_t)state_now_ms() + wait_ms + 500 > j->lease_until_ms) {
        /* The budget frees up only after this lease ends: hand the job back for then
         * rather than let another worker lease it meanwhile and send it twice. */
        j->retry = 1;
        j->uncounted = 1;
        j->not_before_ms = (int64_t)state_now_ms() + wait_ms;
        job_report(j);
        return;
    }
    if (wait_ms > 0) {
        svc_metrics_counter_add("suppressd_intercom_rate_limit_waits_total",
                                "Times an Intercom request waited for the shared "
                                "INTERCOM_RATE_LIMIT budget.", "", 1);
        if (j->wait_ev == NULL)
            j->wait_ev = evtimer_new(w->base, on_rate_wait, j);
        struct timeval tv = {wait_ms / 1000, (wait_ms % 1000) * 1000};
        evtimer_add(j->wait_ev, &tv);
        return;
    }
    struct svc_http_request rq = {j->method, j->url, j->body, j->body ? strlen(j->body) : 0,
                                  svc_intercom_headers(w->cfg), NULL, w->cfg->intercom_timeout_ms};
    j->in_curl = 1;
    if (svc_curl_start(w->curl, &rq, on_response, j) < 0) {
        struct svc_http_result res = {0};
        res.error = "cannot start request";
        res.body = "";
        res.retry_after = -1;
        on_response(&res, j);
    }
}

static void send_job(struct job *j) {
    struct svc_intercom *w = j->w;
    if (atomic_load(&paused)) {
        j->retry = 1;
        j->uncounted = 1;
        j->not_before_ms = (int64_t)state_now_ms() + w->cfg->sync_probe_ms;
        job_report(j);
        return;
    }
    char member[64];
    snprintf(member, sizeof(member), "%d-%d-%lu-%llu", (int)getpid(), w->index, ++w->seq,
             (unsigned long long)state_now_ms());
    if (state_outbox_rate_window(w->store, "intercom", svc_intercom_window_budget(w->cfg),
                                 SVC_INTERCOM_WINDOW_MS, member, on_rate, j) < 0)
        on_rate(-1, j);
}

/*---------------------------------------------------------------------------
 * Reporting back
 *--------------------------------------------------------------------------*/

static void on_acked(const char *status, void *arg);

static void on_dead_lettered(int ok, void *arg) {
    struct job *j = arg;
    if (!ok) {
        /* Keep the job: its lease runs out and it is tried again. */
        svc_log_error("dead_letter_failed", "job", json_string(j->id), NULL);
        job_free(j);
        return;
    }
    count(M_JOB, M_JOB_HELP, j->type_name, "dead_lettered", 1);
    svc_log_warn("intercom_dead_letter", "job", json_string(j->id),
                 "reason", json_string(j->dead_reason), "status", json_integer(j->status), NULL);
    free(j->dead_reason);
    j->dead_reason = NULL;
    j->retry = 0;
    job_report(j);
}

static const char *job_user(const struct job *j, char *buf, size_t n) {
    const json_t *ev = json_object_get(j->rec, "event");
    const char *u = json_string_value(json_object_get(ev, "user_id"));
    if (u == NULL)
        u = json_string_value(json_object_get(ev, "email"));
    if (u != NULL)
        return u;
    if (j->type == J_LOOKUP) {
        snprintf(buf, n, "intercom:%s", json_string_value(json_object_get(j->rec, "contact")));
        return buf;
    }
    return "";
}

/* Dead letter (when the job failed for good), then ack. */
static void job_report(struct job *j) {
    struct svc_intercom *w = j->w;
    if (j->dead_reason != NULL) {
        json_t *rec = json_deep_copy(j->rec);
        json_object_set_new(rec, "job", json_string(j->id));
        char *record = json_dumps(rec, JSON_COMPACT);
        json_decref(rec);
        char ubuf[300];
        struct state_dead_letter dl = {
            .destination = "intercom",
            .uid = job_user(j, ubuf, sizeof(ubuf)),
            .kind = j->type_name,
            .reason = j->dead_reason,
            .status = j->status,
            .response = j->response,
            .payload = j->body ? j->body : j->url,
            .record = record,
        };
        int rc = state_outbox_dead_letter(w->store, &dl, 1, on_dead_lettered, j);
        free(record);
        if (rc < 0)
            job_free(j);
        return;
    }
    struct state_job_ack a = {
        .id = j->id,
        .retry = j->retry,
        .uncounted = j->uncounted,
        .not_before_ms = j->not_before_ms,
        .give_up_ms = w->cfg->sync_give_up_s * 1000,
    };
    if (state_jobs_ack(w->store, &a, (int64_t)state_now_ms(), on_acked, j) < 0)
        job_free(j);
}

static void on_acked(const char *status, void *arg) {
    struct job *j = arg;
    if (status != NULL && strcmp(status, "exhausted") == 0) {
        job_dead(j, "retries_exhausted", j->status, "");
        job_report(j);
        return;
    }
    if (status != NULL)
        count(M_JOB, M_JOB_HELP, j->type_name,
              strcmp(status, "done") == 0 ? "done" : "retried", 1);
    job_free(j);
}

/*---------------------------------------------------------------------------
 * Leasing
 *--------------------------------------------------------------------------*/

static void dry_job(struct job *j) {
    json_t *body = j->body ? json_loads(j->body, 0, NULL) : NULL;
    svc_log_info("intercom_dry_run", "method", json_string(j->method), "url", json_string(j->url),
                 "body", body ? body : json_null(), NULL);
    count(M_REQ, M_REQ_HELP, j->type_name, "dry_run", 1);
    job_report(j);
}

static void on_leased(struct state_job *jobs, size_t n, void *arg) {
    struct svc_intercom *w = arg;
    w->leasing = 0;
    if (jobs == NULL || n == 0) {
        w->empty_partitions += PARTITIONS_PER_ROUND;
        schedule(w, jobs != NULL && w->empty_partitions < STATE_PARTITIONS ? 0 : IDLE_MS);
        return;
    }
    w->empty_partitions = 0;
    for (size_t i = 0; i < n; i++) {
        struct job *j = calloc(1, sizeof(*j));
        if (j == NULL)
            abort();
        j->w = w;
        j->lease_until_ms = (int64_t)state_now_ms() + w->cfg->sync_lease_ms;
        j->id = strdup(jobs[i].id);
        j->rec = json_loads(jobs[i].record, 0, NULL);
        j->next = w->head;
        if (w->head)
            w->head->prev = j;
        w->head = j;
        w->active++;
    }
    /* Start them after all are linked: a job that finishes at once must not see an
     * empty worker and lease again in the middle of this loop. */
    for (struct job *j = w->head, *next; j != NULL; j = next) {
        next = j->next;
        if (j->url != NULL || j->dead_reason != NULL || j->applying)
            continue;
        if (job_build(j) < 0) {
            job_dead(j, "invalid_job: the queued record cannot be sent", 0, "");
            job_report(j);
        } else if (w->dry) {
            dry_job(j);
        } else {
            send_job(j);
        }
    }
}

static void on_probe(const struct svc_http_result *res, void *arg) {
    (void)arg;
    atomic_store(&probe_inflight, 0);
    if (res->status != 0 && res->status != 401 && res->status != 403 && res->status < 500) {
        atomic_store(&paused, 0);
        svc_log_info("intercom_resumed", "message",
                     json_string("Intercom accepted the access token; jobs resumed"), NULL);
    }
}

static void maybe_probe(struct svc_intercom *w) {
    long long now = mono_ms();
    if (now < atomic_load(&next_probe_ms) || atomic_exchange(&probe_inflight, 1))
        return;
    atomic_store(&next_probe_ms, now + w->cfg->sync_probe_ms);
    char *url = url_for(w->cfg, "/me");
    struct svc_http_request rq = {"GET", url, NULL, 0, svc_intercom_headers(w->cfg), NULL,
                                  w->cfg->intercom_timeout_ms};
    if (svc_curl_start(w->curl, &rq, on_probe, NULL) < 0)
        atomic_store(&probe_inflight, 0);
    free(url);
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    struct svc_intercom *w = arg;
    (void)fd;
    (void)what;
    if (w->stopping || w->leasing || w->active > 0)
        return;
    if (atomic_load(&paused)) {
        maybe_probe(w);
        schedule(w, IDLE_MS);
        return;
    }
    if (!state_store_ready(w->store)) {
        schedule(w, IDLE_MS);
        return;
    }
    unsigned first = w->next_partition;
    w->next_partition = (w->next_partition + PARTITIONS_PER_ROUND) % STATE_PARTITIONS;
    w->leasing = 1;
    if (state_jobs_lease(w->store, first, PARTITIONS_PER_ROUND, (int64_t)state_now_ms(),
                         w->cfg->sync_lease_ms, JOBS_PER_PARTITION, on_leased, w) < 0) {
        w->leasing = 0;
        schedule(w, IDLE_MS);
    }
}

static void schedule(struct svc_intercom *w, int ms) {
    if (w->stopping)
        return;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(w->tick, &tv);
}

/*---------------------------------------------------------------------------
 * Partition sweeps (reconciliation, pruning) and gauges (loop 0)
 *--------------------------------------------------------------------------*/

static void on_scanned(long long queued, void *arg) {
    (void)arg;
    if (queued > 0) {
        svc_metrics_counter_add("suppressd_reconcile_queued_total",
                                "Long-open tickets queued for a re-check with Intercom.", "",
                                (uint64_t)queued);
        svc_log_info("reconcile_queued", "tickets", json_integer(queued), NULL);
        schedule(arg, 0);
    }
}

static void on_reconcile_tick(evutil_socket_t fd, short what, void *arg) {
    struct svc_intercom *w = arg;
    (void)fd;
    (void)what;
    if (w->stopping || !state_store_ready(w->store))
        return;
    int64_t now_ms = (int64_t)state_now_ms();
    int reconcile = w->cfg->reconcile_interval > 0;
    int64_t interval = reconcile ? w->cfg->reconcile_interval : SWEEP_INTERVAL_S;
    int64_t cutoff = reconcile ? now_ms / 1000 - w->cfg->reconcile_age : -1;
    struct state_apply_opts o;
    svc_intercom_apply_opts(w->cfg, &o);
    for (unsigned p = 0; p < STATE_PARTITIONS; p++)
        state_jobs_sweep(w->store, p, now_ms, interval * 1000, cutoff, RECONCILE_MAX_PER_BUCKET,
                         o.link_ttl, on_scanned, w);
}

static void on_stats_tick(evutil_socket_t fd, short what, void *arg) {
    struct svc_intercom *w = arg;
    (void)fd;
    (void)what;
    if (!w->stopping && state_store_ready(w->store))
        state_outbox_stats(w->store, "intercom", svc_metrics_queue_stats, (void *)(uintptr_t)"intercom");
}

struct svc_intercom *svc_intercom_new(struct event_base *base, struct state_store *store,
                                      struct svc_curl *curl, const struct svc_config *cfg,
                                      int index) {
    struct svc_intercom *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->base = base;
    w->store = store;
    w->curl = curl;
    w->cfg = cfg;
    w->index = index;
    w->dry = cfg->intercom_token == NULL;
    atomic_store(&dry_run, w->dry);
    w->next_partition = (unsigned)(index * 29 + 7) % STATE_PARTITIONS;
    w->tick = evtimer_new(base, on_tick, w);
    if (w->tick == NULL) {
        free(w);
        return NULL;
    }
    if (index == 0) {
        struct timeval five = {5, 0};
        w->stats_ev = event_new(base, -1, EV_PERSIST, on_stats_tick, w);
        if (w->stats_ev != NULL)
            event_add(w->stats_ev, &five);
        /* Try often enough to notice a partition whose lock expired; the locks keep the
         * real rate at one sweep per partition per interval for all replicas. */
        int64_t interval = cfg->reconcile_interval > 0 ? cfg->reconcile_interval
                                                       : SWEEP_INTERVAL_S;
        struct timeval tv = {(time_t)(interval < 30 ? interval : 30), 0};
        w->reconcile_ev = event_new(base, -1, EV_PERSIST, on_reconcile_tick, w);
        if (w->reconcile_ev != NULL)
            event_add(w->reconcile_ev, &tv);
    }
    schedule(w, 150);
    return w;
}

void svc_intercom_stop(struct svc_intercom *w) {
    if (w == NULL)
        return;
    w->stopping = 1;
    evtimer_del(w->tick);
    if (w->stats_ev)
        event_del(w->stats_ev);
    if (w->reconcile_ev)
        event_del(w->reconcile_ev);
}

int svc_intercom_idle(const struct svc_intercom *w) {
    return w == NULL || (w->active == 0 && !w->leasing);
}

void svc_intercom_free(struct svc_intercom *w) {
    if (w == NULL)
        return;
    w->stopping = 1;
    while (w->head != NULL)
        job_free(w->head);
    event_free(w->tick);
    if (w->stats_ev)
        event_free(w->stats_ev);
    if (w->reconcile_ev)
        event_free(w->reconcile_ev);
    free(w);
}
