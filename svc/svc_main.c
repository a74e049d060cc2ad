/* suppressd: keeps marketing from talking to customers at the wrong moment.
 *
 * main() wires the process: configuration from the environment (flags override it),
 * logging, the event loops, and a clean drain on SIGTERM. Everything else lives in
 * api/ (HTTP handlers and payloads) and state/ (Redis). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_jarena.h"
#include "svc/svc_config.h"
#include "svc/svc_curl.h"
#include "svc/svc_log.h"
#include "svc/svc_server.h"

#define SUPPRESSD_VERSION "0.1.0"
#define DRAIN_MS 9000 /* the contract allows 10 s from SIGTERM to exit */

static void usage(FILE *out) {
    fprintf(out,
            "usage: suppressd [--listen HOST:PORT] [--redis-url URL] [--threads N]\n"
            "                 [--log-level debug|info|warn|error]\n"
            "       suppressd check-config   validate the environment and exit\n"
            "       suppressd backfill [--restart]\n"
            "                                record every ticket open in Intercom now (resumes an\n"
            "                                interrupted run unless --restart)\n"
            "       suppressd --version\n"
            "Configuration comes from the environment (see README.md); flags override it.\n");
}

/* Maps a flag to the variable it overrides. */
static const char *flag_var(const char *flag) {
    static const char *const map[][2] = {
        {"--listen", "SUPPRESS_LISTEN"},
        {"--redis-url", "REDIS_URL"},
        {"--threads", "SUPPRESS_THREADS"},
        {"--log-level", "SUPPRESS_LOG_LEVEL"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(flag, map[i][0]) == 0)
            return map[i][1];
    }
    return NULL;
}

static void log_startup(const struct svc_config *cfg) {
    svc_log_info("starting", "version", json_string(SUPPRESSD_VERSION),
                 "redis", json_sprintf("%s:%d/%d", cfg->redis_host, cfg->redis_port, cfg->redis_db),
                 "intercom_webhooks", json_string(cfg->intercom_secret ? "verified" : "disabled"),
                 "customerio", json_string(cfg->cio_site_id ? "live" : "dry_run"),
                 "intercom_api", json_string(cfg->intercom_token ? "live" : "dry_run"),
                 "campaigns", json_integer((json_int_t)cfg->rules.ncampaigns),
                 "rules", json_string(cfg->rules_file ? cfg->rules_file : "built-in"), NULL);
    if (cfg->ntokens == 0)
        svc_log_warn("api_open", "message",
                     json_string("SUPPRESS_API_TOKENS is not set: /v1/* answers without "
                                 "authentication"),
                     NULL);
    if (cfg->intercom_secret == NULL)
        svc_log_warn("intercom_webhooks_disabled", "message",
                     json_string("INTERCOM_CLIENT_SECRET is not set: /webhooks/intercom "
                                 "answers 503"),
                     NULL);
}

int main(int argc, char **argv) {
    int check_only = 0, backfill = 0, restart = 0;
    char err[512];

    /* Before any jansson use and before any thread: webhook parses allocate from a
     * per-document arena (api/api_jarena.h). */
    api_jarena_install();

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            printf("suppressd %s\n", SUPPRESSD_VERSION);
            return 0;
        }
        if (strcmp(a, "check-config") == 0) {
            check_only = 1;
            continue;
        }
        if (strcmp(a, "backfill") == 0) {
            backfill = 1;
            continue;
        }
        if (strcmp(a, "--restart") == 0 && backfill) {
            restart = 1;
            continue;
        }
        const char *var = flag_var(a);
        if (var == NULL || i + 1 == argc) {
            fprintf(stderr, "suppressd: unknown or incomplete argument \"%s\"\n", a);
            usage(stderr);
            return 2;
        }
        setenv(var, argv[++i], 1);
    }

    const char *lvl = getenv("SUPPRESS_LOG_LEVEL");
    enum svc_log_level level = SVC_LOG_INFO;
    if (lvl != NULL && *lvl != '\0' && svc_log_parse_level(lvl, &level) < 0) {
        svc_log_error("invalid_config", "message",
                      json_sprintf("invalid SUPPRESS_LOG_LEVEL \"%s\": expected debug, info, "
                                   "warn or error", lvl),
                      NULL);
        return 2;
    }
    svc_log_set_level(level);

    struct svc_config cfg;
    if (svc_config_load(&cfg, err, sizeof(err)) < 0) {
        svc_log_error("invalid_config", "message", json_string(err), NULL);
        svc_config_free(&cfg);
        return 2;
    }
    if (check_only) {
        printf("configuration ok\n");
        svc_config_free(&cfg);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    svc_curl_global_init();
    if (backfill) {
        int brc = svc_server_backfill(&cfg, restart);
        svc_config_free(&cfg);
        curl_global_cleanup();
        return brc;
    }
    log_startup(&cfg);

    struct svc_server *srv = svc_server_new(&cfg, err, sizeof(err));
    if (srv == NULL) {
        svc_log_error("startup_failed", "message", json_string(err), NULL);
        svc_config_free(&cfg);
        return 1;
    }
    int rc = svc_server_run(srv, DRAIN_MS);
    svc_server_free(srv);
    svc_config_free(&cfg);
    curl_global_cleanup();
    return rc;
}
