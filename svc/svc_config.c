/* svc_config: configuration from the environment. See svc_config.h. */
#include "svc/svc_config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

/* Returns the variable's value, or NULL when unset or empty: an empty value means
 * "not configured", which is what `VAR= make run` users expect. */
static const char *env(const char *name) {
    const char *v = getenv(name);
    return (v != NULL && *v != '\0') ? v : NULL;
}

static char *dup_or_die(const char *s) {
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

/* Parses a decimal integer in [min, max]. Returns 0 or -1. */
static int parse_int(const char *s, long min, long max, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int int_var(const char *name, long def, long min, long max, long *out, char *err,
                   size_t errlen) {
    const char *v = env(name);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (parse_int(v, min, max, out) < 0) {
        snprintf(err, errlen, "invalid %s \"%s\": expected an integer from %ld to %ld", name, v,
                 min, max);
        return -1;
    }
    return 0;
}

/* Checks an http(s) base URL and strips trailing slashes. */
static int url_var(const char *name, const char *value, char **out, char *err, size_t errlen) {
    if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0) {
        snprintf(err, errlen, "invalid %s \"%s\": expected an http:// or https:// URL", name,
                 value);
        return -1;
    }
    char *d = dup_or_die(value);
    size_t n = strlen(d);
    while (n > 8 && d[n - 1] == '/')
        d[--n] = '\0';
    *out = d;
    return 0;
}

int svc_config_parse_listen(struct svc_config *cfg, const char *value, char *err,
                            size_t errlen) {
    const char *colon;
    char host[256];
    size_t hlen;

    if (value[0] == '[') {
        const char *close = strchr(value, ']');
        if (close == NULL || close[1] != ':')
            goto bad;
        hlen = (size_t)(close - value - 1);
        if (hlen == 0 || hlen >= sizeof(host))
            goto bad;
        memcpy(host, value + 1, hlen);
        colon = close + 1;
    } else {
        colon = strrchr(value, ':');
        if (colon == NULL)
            goto bad;
        hlen = (size_t)(colon - value);
        if (hlen >= sizeof(host))
            goto bad;
        memcpy(host, value, hlen);
    }
    host[hlen] = '\0';
    long port;
    if (parse_int(colon + 1, 1, 65535, &port) < 0)
        goto bad;
    free(cfg->listen_host);
    cfg->listen_host = dup_or_die(hlen ? host : "0.0.0.0");
    cfg->listen_port = (int)port;
    return 0;
bad:
    snprintf(err, errlen, "invalid SUPPRESS_LISTEN \"%s\": expected host:port, e.g. "
             "0.0.0.0:8080", value);
    return -1;
}

int svc_config_parse_redis_url(struct svc_config *cfg, const char *url, char *err,
                               size_t errlen) {
    char buf[1024];
    char *p, *at, *slash, *host, *portstr = NULL;

    if (strncmp(url, "redis://", 8) != 0 || strlen(url) >= sizeof(buf))
        goto bad;
    snprintf(buf, sizeof(buf), "%s", url + 8);
    p = buf;

    free(cfg->redis_user);
    free(cfg->redis_password);
    free(cfg->redis_host);
    cfg->redis_user = cfg->redis_password = cfg->redis_host = NULL;

    at = strrchr(p, '@');
    if (at != NULL) {
        *at = '\0';
        char *colon = strchr(p, ':');
        if (colon == NULL)
            goto bad; /* "redis://secret@host" is ambiguous; the contract form is :pass@ */
        *colon = '\0';
        if (*p != '\0')
            cfg->redis_user = dup_or_die(p);
        if (colon[1] != '\0')
            cfg->redis_password = dup_or_die(colon + 1);
        p = at + 1;
    }
    slash = strchr(p, '/');
    cfg->redis_db = 0;
    if (slash != NULL) {
        *slash = '\0';
        long db;
        if (slash[1] != '\0') {
            if (parse_int(slash + 1, 0, 1023, &db) < 0)
                goto bad;
            cfg->redis_db = (int)db;
        }
    }
    if (*p == '[') {
        char *close = strchr(p, ']');
        if (close == NULL)
            goto bad;
        *close = '\0';
        host = p + 1;
        if (close[1] == ':')
            portstr = close + 2;
        else if (close[1] != '\0')
            goto bad;
    } else {
        host = p;
        char *colon = strchr(p, ':');
        if (colon != NULL) {
            *colon = '\0';
            portstr = colon + 1;
        }
    }
    if (*host == '\0')
        goto bad;
    long port = 6379;
    if (portstr != NULL && parse_int(portstr, 1, 65535, &port) < 0)
        goto bad;
    cfg->redis_host = dup_or_die(host);
    cfg->redis_port = (int)port;
    return 0;
bad:
    snprintf(err, errlen, "invalid REDIS_URL: expected redis://[:password@]host:port[/db]");
    return -1;
}

/* Splits a comma-separated list, trimming spaces and dropping empty items. */
static int split_list(const char *name, const char *value, char **items, size_t max,
                      size_t *n, int lower, char *err, size_t errlen) {
    const char *p = value;
    *n = 0;
    while (*p) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *s = p;
        while (s < end && isspace((unsigned char)*s))
            s++;
        const char *e = end;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        if (e > s) {
            if (*n == max) {
                snprintf(err, errlen, "invalid %s: at most %zu items", name, max);
                return -1;
            }
            char *item = strndup(s, (size_t)(e - s));
            if (item == NULL)
                abort();
            if (lower) {
                for (char *c = item; *c; c++)
                    *c = (char)tolower((unsigned char)*c);
            }
            items[(*n)++] = item;
        }
        p = comma ? comma + 1 : end;
    }
    return 0;
}

static int load_rules(struct svc_config *cfg, const char *path, char *err, size_t errlen) {
    json_error_t jerr;
    char why[256];
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        snprintf(err, errlen, "invalid SUPPRESS_RULES_FILE \"%s\": %s (line %d)", path,
                 jerr.text, jerr.line);
        return -1;
    }
    int rc = state_rules_parse_json(&cfg->rules, doc, why, sizeof(why));
    json_decref(doc);
    if (rc < 0) {
        snprintf(err, errlen, "invalid SUPPRESS_RULES_FILE \"%s\": %s", path, why);
        return -1;
    }
    return 0;
}

static int load_taxonomy(struct svc_config *cfg, const char *path, char *err, size_t errlen) {
    json_error_t jerr;
    char why[256];
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        snprintf(err, errlen, "invalid SUPPRESS_EVENTS_FILE \"%s\": %s (line %d)", path, jerr.text,
                 jerr.line);
        return -1;
    }
    int rc = cio_taxonomy_parse(&cfg->taxonomy, doc, why, sizeof(why));
    json_decref(doc);
    if (rc < 0) {
        snprintf(err, errlen, "invalid SUPPRESS_EVENTS_FILE \"%s\": %s", path, why);
        return -1;
    }
    return 0;
}

/* Customer.io metrics forwarded to Intercom by default: what support wants to see on a
 * customer's timeline (sends, opens, clicks, conversions, unsubscribes, bounces). */
#define DEFAULT_CIO_EVENTS                                                                  \
    "email_sent,email_delivered,email_opened,email_clicked,email_converted,"              \
    "email_unsubscribed,email_bounced,customer_subscribed,customer_unsubscribed"

/* SUPPRESS_CIO_EVENTS: "<object_type>_<metric>[=<intercom event name>]", comma-separated.
 * Without a name the event is "cio_<object_type>_<metric>". */
static int load_cio_events(struct svc_config *cfg, const char *value, char *err,
                           size_t errlen) {
    char *items[SVC_CONFIG_MAX_CIO_EVENTS];
    size_t n = 0;
    if (split_list("SUPPRESS_CIO_EVENTS", value, items, SVC_CONFIG_MAX_CIO_EVENTS, &n, 0, err,
                   errlen) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char *eq = strchr(items[i], '=');
        const char *name = NULL;
        if (eq != NULL) {
            *eq = '\0';
            name = eq + 1;
        }
        int ok = items[i][0] != '\0' && strchr(items[i], '_') != NULL &&
                 (name == NULL || (*name != '\0' && strlen(name) <= 255));
        for (const char *c = items[i]; ok && *c; c++)
            ok = islower((unsigned char)*c) || *c == '_' || isdigit((unsigned char)*c);
        if (!ok) {
            snprintf(err, errlen, "invalid SUPPRESS_CIO_EVENTS entry \"%s%s%s\": expected "
                     "<object_type>_<metric>[=<intercom event name>], e.g. email_opened",
                     items[i], eq ? "=" : "", name ? name : "");
            for (size_t j = i; j < n; j++)
                free(items[j]);
            return -1;
        }
        char buf[300];
        snprintf(buf, sizeof(buf), "cio_%s", items[i]);
        cfg->cio_event_names[cfg->ncio_events] = dup_or_die(name ? name : buf);
        cfg->cio_event_keys[cfg->ncio_events++] = items[i];
    }
    return 0;
}

const char *svc_config_cio_event_name(const struct svc_config *cfg, const char *object_type,
                                      const char *metric) {
    size_t ol = strlen(object_type);
    for (size_t i = 0; i < cfg->ncio_events; i++) {
        const char *k = cfg->cio_event_keys[i];
        if (strncmp(k, object_type, ol) == 0 && k[ol] == '_' && strcmp(k + ol + 1, metric) == 0)
            return cfg->cio_event_names[i];
    }
    return NULL;
}

static const char *region_url(const char *region, const char *const *names,
                              const char *const *urls, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(region, names[i]) == 0)
            return urls[i];
    }
    return NULL;
}

int svc_config_load(struct svc_config *cfg, char *err, size_t errlen) {
    const char *v;
    long n;

    memset(cfg, 0, sizeof(*cfg));
    cfg->max_body = 1 << 20;
    state_rules_default(&cfg->rules);
    cio_taxonomy_default(&cfg->taxonomy);

    if (svc_config_parse_listen(cfg, (v = env("SUPPRESS_LISTEN")) ? v : "0.0.0.0:8080", err,
                                errlen) < 0)
        return -1;
    if (svc_config_parse_redis_url(cfg, (v = env("REDIS_URL")) ? v : "redis://127.0.0.1:6379/0",
                                   err, errlen) < 0)
        return -1;

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1)
        ncpu = 1;
    if (ncpu > 64)
        ncpu = 64;
    if (int_var("SUPPRESS_THREADS", ncpu, 1, 64, &n, err, errlen) < 0)
        return -1;
    cfg->threads = (int)n;
    if (int_var("SUPPRESS_HTTP_TIMEOUT", 10, 1, 3600, &n, err, errlen) < 0)
        return -1;
    cfg->http_timeout = (int)n;
    if (int_var("SUPPRESS_REDIS_TIMEOUT_MS", 2000, 50, 60000, &n, err, errlen) < 0)
        return -1;
    cfg->redis_timeout_ms = (int)n;

    if ((v = env("INTERCOM_CLIENT_SECRET")) != NULL)
        cfg->intercom_secret = dup_or_die(v);
    if ((v = env("INTERCOM_ACCESS_TOKEN")) != NULL)
        cfg->intercom_token = dup_or_die(v);
    if ((v = env("INTERCOM_API_URL")) != NULL) {
        if (url_var("INTERCOM_API_URL", v, &cfg->intercom_api_url, err, errlen) < 0)
            return -1;
    } else {
        static const char *const names[] = {"us", "eu", "au"};
        static const char *const urls[] = {"https://api.intercom.io", "https://api.eu.intercom.io",
                                           "https://api.au.intercom.io"};
        const char *region = (v = env("INTERCOM_REGION")) ? v : "us";
        const char *url = region_url(region, names, urls, 3);
        if (url == NULL) {
            snprintf(err, errlen, "invalid INTERCOM_REGION \"%s\": expected us, eu or au", region);
            return -1;
        }
        cfg->intercom_api_url = dup_or_die(url);
    }
    cfg->intercom_version = dup_or_die((v = env("INTERCOM_VERSION")) ? v : "2.14");
    if (int_var("INTERCOM_RATE_LIMIT", 10000, 6, 1000000, &n, err, errlen) < 0)
        return -1;
    cfg->intercom_rate_limit = (int)n;
    if (int_var("INTERCOM_TIMEOUT_MS", 10000, 100, 120000, &n, err, errlen) < 0)
        return -1;
    cfg->intercom_timeout_ms = (int)n;
    if (int_var("SUPPRESS_LOOKUP_TTL", 86400, 0, 400 * 86400L, &n, err, errlen) < 0)
        return -1;
    cfg->lookup_ttl = n;
    if (int_var("SUPPRESS_RECONCILE_INTERVAL", 3600, 0, 30 * 86400L, &n, err, errlen) < 0)
        return -1;
    cfg->reconcile_interval = n;
    if (int_var("SUPPRESS_RECONCILE_AGE", 3 * 86400, 0, 365 * 86400L, &n, err, errlen) < 0)
        return -1;
    cfg->reconcile_age = n;

    const char *site = env("CIO_SITE_ID"), *key = env("CIO_API_KEY");
    if ((site == NULL) != (key == NULL)) {
        snprintf(err, errlen, "CIO_SITE_ID and CIO_API_KEY must be set together");
        return -1;
    }
    if (site != NULL) {
        cfg->cio_site_id = dup_or_die(site);
        cfg->cio_api_key = dup_or_die(key);
    }
    if ((v = env("CIO_TRACK_URL")) != NULL) {
        if (url_var("CIO_TRACK_URL", v, &cfg->cio_track_url, err, errlen) < 0)
            return -1;
    } else {
        static const char *const names[] = {"us", "eu"};
        static const char *const urls[] = {"https://track.customer.io",
                                           "https://track-eu.customer.io"};
        const char *region = (v = env("CIO_REGION")) ? v : "us";
        const char *url = region_url(region, names, urls, 2);
        if (url == NULL) {
            snprintf(err, errlen, "invalid CIO_REGION \"%s\": expected us or eu", region);
            return -1;
        }
        cfg->cio_track_url = dup_or_die(url);
    }
    if ((v = env("CIO_WEBHOOK_SIGNING_KEY")) != NULL)
        cfg->cio_webhook_key = dup_or_die(v);
    if (int_var("CIO_WEBHOOK_MAX_AGE", 0, 0, 30 * 86400L, &n, err, errlen) < 0)
        return -1;
    cfg->cio_webhook_max_age = n;
    if (int_var("SUPPRESS_CIO_EMAIL_FALLBACK", 0, 0, 1, &n, err, errlen) < 0)
        return -1;
    cfg->cio_email_fallback = (int)n;
    if (load_cio_events(cfg, (v = env("SUPPRESS_CIO_EVENTS")) ? v : DEFAULT_CIO_EVENTS, err,
                        errlen) < 0)
        return -1;
    if (int_var("CIO_RATE_LIMIT", 100, 1, 100000, &n, err, errlen) < 0)
        return -1;
    cfg->cio_rate_limit = (int)n;
    if ((v = env("CIO_API")) != NULL) {
        if (strcmp(v, "v1") != 0 && strcmp(v, "v2") != 0) {
            snprintf(err, errlen, "invalid CIO_API \"%s\": expected v2 (batch) or v1", v);
            return -1;
        }
        cfg->cio_api_v1 = strcmp(v, "v1") == 0;
    }
    if (int_var("CIO_TIMEOUT_MS", 10000, 100, 120000, &n, err, errlen) < 0)
        return -1;
    cfg->cio_timeout_ms = (int)n;
    if (int_var("SUPPRESS_SYNC_LEASE_MS", 30000, 200, 3600000, &n, err, errlen) < 0)
        return -1;
    cfg->sync_lease_ms = (int)n;
    if (int_var("SUPPRESS_SYNC_GIVE_UP", 25 * 3600, 1, 30 * 86400, &n, err, errlen) < 0)
        return -1;
    cfg->sync_give_up_s = n;
    if (int_var("SUPPRESS_SYNC_BATCH", 100, 1, 1000, &n, err, errlen) < 0)
        return -1;
    cfg->sync_batch = (int)n;
    if (int_var("SUPPRESS_SYNC_PROBE_MS", 15000, 50, 3600000, &n, err, errlen) < 0)
        return -1;
    cfg->sync_probe_ms = (int)n;
    if ((v = env("SUPPRESS_EVENTS_FILE")) != NULL) {
        cfg->events_file = dup_or_die(v);
        if (load_taxonomy(cfg, v, err, errlen) < 0)
            return -1;
    }
    if ((v = env("SUPPRESS_PROFILE_ATTRIBUTES")) != NULL &&
        split_list("SUPPRESS_PROFILE_ATTRIBUTES", v, cfg->profile_attrs,
                   SVC_CONFIG_MAX_PROFILE_ATTRS, &cfg->nprofile_attrs, 0, err, errlen) < 0)
        return -1;

    if ((v = env("SUPPRESS_API_TOKENS")) != NULL) {
        if (split_list("SUPPRESS_API_TOKENS", v, cfg->api_tokens, SVC_CONFIG_MAX_TOKENS,
                       &cfg->ntokens, 0, err, errlen) < 0)
            return -1;
        if (cfg->ntokens == 0) {
            snprintf(err, errlen, "invalid SUPPRESS_API_TOKENS: no token in the list");
            return -1;
        }
    }
    if (split_list("SUPPRESS_CHURN_TAGS", (v = env("SUPPRESS_CHURN_TAGS")) ? v : "churn-risk",
                   cfg->churn_tags, SVC_CONFIG_MAX_TAGS, &cfg->nchurn_tags, 1, err,
                   errlen) < 0)
        return -1;
    if (cfg->nchurn_tags == 0) {
        snprintf(err, errlen, "invalid SUPPRESS_CHURN_TAGS: no tag in the list");
        return -1;
    }
    if ((v = env("SUPPRESS_RULES_FILE")) != NULL) {
        cfg->rules_file = dup_or_die(v);
        if (load_rules(cfg, v, err, errlen) < 0)
            return -1;
    }
    return 0;
}

void svc_config_free(struct svc_config *cfg) {
    free(cfg->listen_host);
    free(cfg->redis_host);
    free(cfg->redis_user);
    free(cfg->redis_password);
    free(cfg->intercom_secret);
    free(cfg->intercom_token);
    free(cfg->intercom_api_url);
    free(cfg->cio_site_id);
    free(cfg->cio_api_key);
    free(cfg->cio_track_url);
    free(cfg->cio_webhook_key);
    free(cfg->intercom_version);
    for (size_t i = 0; i < cfg->ncio_events; i++) {
        free(cfg->cio_event_keys[i]);
        free(cfg->cio_event_names[i]);
    }
    for (size_t i = 0; i < cfg->ntokens; i++)
        free(cfg->api_tokens[i]);
    for (size_t i = 0; i < cfg->nchurn_tags; i++)
        free(cfg->churn_tags[i]);
    free(cfg->rules_file);
    free(cfg->events_file);
    for (size_t i = 0; i < cfg->nprofile_attrs; i++)
        free(cfg->profile_attrs[i]);
    memset(cfg, 0, sizeof(*cfg));
}

int svc_config_is_churn_tag(const struct svc_config *cfg, const char *tag) {
    for (size_t i = 0; i < cfg->nchurn_tags; i++) {
        if (strcasecmp(cfg->churn_tags[i], tag) == 0)
            return 1;
    }
    return 0;
}
