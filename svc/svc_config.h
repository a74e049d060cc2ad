/* svc_config: the process configuration, read from the environment once at start.
 *
 * Every variable of the contract (../README "Configuration") plus the project's own
 * tuning knobs. svc_config_load validates everything up front so a bad value stops the
 * process with one clear line instead of failing later on the hot path. */
#ifndef SVC_CONFIG_H
#define SVC_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "state/state_rules.h"
#include "svc/svc_cio.h"

#define SVC_CONFIG_MAX_TOKENS 64
#define SVC_CONFIG_MAX_TAGS 64
#define SVC_CONFIG_MAX_PROFILE_ATTRS 64
#define SVC_CONFIG_MAX_CIO_EVENTS 64

struct svc_config {
    /* HTTP server */
    char *listen_host;           /* SUPPRESS_LISTEN host part ("0.0.0.0") */
    int listen_port;             /* SUPPRESS_LISTEN port part (8080) */
    int threads;                 /* SUPPRESS_THREADS: event loops; default = online CPUs */
    int http_timeout;            /* SUPPRESS_HTTP_TIMEOUT: seconds a client may stay idle */
    size_t max_body;             /* request bodies above this answer 413 (1 MiB) */

    /* Redis */
    char *redis_host;
    int redis_port;
    char *redis_user;            /* NULL unless redis://user:pass@ */
    char *redis_password;        /* NULL when none */
    int redis_db;
    int redis_timeout_ms;        /* SUPPRESS_REDIS_TIMEOUT_MS: a command older than this
                                    marks the connection dead (hiredis 0.14 has none) */

    /* Intercom */
    char *intercom_secret;       /* NULL: webhooks answer 503 */
    char *intercom_token;        /* NULL: dry run */
    char *intercom_api_url;
    char *intercom_version;      /* INTERCOM_VERSION: Intercom-Version header ("2.14") */
    int intercom_rate_limit;     /* INTERCOM_RATE_LIMIT: requests per minute, all replicas,
                                    enforced per 10-second window as Intercom does */
    int intercom_timeout_ms;     /* INTERCOM_TIMEOUT_MS: per request */
    int64_t lookup_ttl;          /* SUPPRESS_LOOKUP_TTL: seconds before an unknown contact
                                    is looked up again (0: never look up) */
    int64_t reconcile_interval;  /* SUPPRESS_RECONCILE_INTERVAL: seconds (0: off) */
    int64_t reconcile_age;       /* SUPPRESS_RECONCILE_AGE: re-check tickets open longer */

    /* Customer.io */
    char *cio_site_id;
    char *cio_api_key;
    char *cio_track_url;
    char *cio_webhook_key;
    int64_t cio_webhook_max_age; /* CIO_WEBHOOK_MAX_AGE: seconds (0: no check) */
    size_t ncio_events;          /* SUPPRESS_CIO_EVENTS: forwarded "<object>_<metric>" and */
    char *cio_event_keys[SVC_CONFIG_MAX_CIO_EVENTS];   /* the Intercom event name of each */
    char *cio_event_names[SVC_CONFIG_MAX_CIO_EVENTS];
    int cio_email_fallback;      /* SUPPRESS_CIO_EMAIL_FALLBACK=1: no identifiers.id -> email */
    int cio_rate_limit;
    int cio_api_v1;              /* CIO_API=v1: one PUT/POST per item, not /api/v2/batch */
    int cio_timeout_ms;          /* CIO_TIMEOUT_MS: per request */

    /* Delivery worker */
    int sync_lease_ms;           /* SUPPRESS_SYNC_LEASE_MS: a leased user is retaken after */
    int64_t sync_give_up_s;      /* SUPPRESS_SYNC_GIVE_UP: seconds of failures before a
                                    dead letter (default 25 h) */
    int sync_batch;              /* SUPPRESS_SYNC_BATCH: users per batch request */
    int sync_probe_ms;           /* SUPPRESS_SYNC_PROBE_MS: credential probe interval after
                                    a 401/403 */
    struct cio_taxonomy taxonomy;
    char *events_file;           /* SUPPRESS_EVENTS_FILE, NULL: seed taxonomy */
    size_t nprofile_attrs;       /* SUPPRESS_PROFILE_ATTRIBUTES: Intercom contact
                                    attributes copied to Customer.io */
    char *profile_attrs[SVC_CONFIG_MAX_PROFILE_ATTRS];

    /* Query API */
    size_t ntokens;
    char *api_tokens[SVC_CONFIG_MAX_TOKENS];

    /* State */
    size_t nchurn_tags;
    char *churn_tags[SVC_CONFIG_MAX_TAGS]; /* lower-cased */
    struct state_rules rules;
    char *rules_file;            /* NULL: built-in rules */
};

/* Reads and validates the environment into `cfg` (zeroed first). Returns 0, or -1 with
 * a one-line reason in `err` naming the variable and what was expected. On error `cfg`
 * holds whatever was parsed so far; svc_config_free releases it either way. */
int svc_config_load(struct svc_config *cfg, char *err, size_t errlen);

/* Releases the strings owned by `cfg`. Safe on a zeroed or partly loaded config. */
void svc_config_free(struct svc_config *cfg);

/* Parses "redis://[[user]:password@]host[:port][/db]" into cfg's redis fields.
 * Exposed for unit tests. Returns 0 or -1 with `err`. */
int svc_config_parse_redis_url(struct svc_config *cfg, const char *url, char *err,
                               size_t errlen);

/* Parses "host:port" ("[::1]:8080" for IPv6). Returns 0 or -1 with `err`. */
int svc_config_parse_listen(struct svc_config *cfg, const char *value, char *err,
                            size_t errlen);

/* The Intercom event name for a Customer.io `<object_type>_<metric>`, or NULL when that
 * metric is not forwarded. */
const char *svc_config_cio_event_name(const struct svc_config *cfg, const char *object_type,
                                      const char *metric);

/* True when `tag` (any case) is one of the configured churn-risk tags. */
int svc_config_is_churn_tag(const struct svc_config *cfg, const char *tag);

#endif
