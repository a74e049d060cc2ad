/* Unit tests for svc_config: every variable's parsing and the one-line errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "svc/svc_config.h"

static const char *const vars[] = {
    "SUPPRESS_LISTEN", "REDIS_URL", "SUPPRESS_THREADS", "SUPPRESS_HTTP_TIMEOUT",
    "SUPPRESS_REDIS_TIMEOUT_MS", "INTERCOM_CLIENT_SECRET", "INTERCOM_ACCESS_TOKEN",
    "INTERCOM_API_URL", "INTERCOM_REGION", "CIO_SITE_ID", "CIO_API_KEY", "CIO_TRACK_URL",
    "CIO_REGION", "CIO_WEBHOOK_SIGNING_KEY", "CIO_RATE_LIMIT", "SUPPRESS_API_TOKENS",
    "SUPPRESS_CHURN_TAGS", "SUPPRESS_RULES_FILE",
};

static int clear_env(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    return 0;
}

static void test_defaults(void **state) {
    (void)state;
    struct svc_config c;
    char err[256];
    assert_int_equal(svc_config_load(&c, err, sizeof(err)), 0);
    assert_string_equal(c.listen_host, "0.0.0.0");
    assert_int_equal(c.listen_port, 8080);
    assert_string_equal(c.redis_host, "127.0.0.1");
    assert_int_equal(c.redis_port, 6379);
    assert_int_equal(c.redis_db, 0);
    assert_null(c.redis_password);
    assert_null(c.intercom_secret);
    assert_string_equal(c.intercom_api_url, "https://api.intercom.io");
    assert_string_equal(c.cio_track_url, "https://track.customer.io");
    assert_int_equal(c.cio_rate_limit, 100);
    assert_int_equal(c.ntokens, 0);
    assert_int_equal(c.nchurn_tags, 1);
    assert_string_equal(c.churn_tags[0], "churn-risk");
    assert_true(c.threads >= 1);
    assert_int_equal(c.max_body, 1 << 20);
    assert_int_equal(c.rules.ncampaigns, 4);
    svc_config_free(&c);
}

static void test_redis_urls(void **state) {
    (void)state;
    struct svc_config c;
    char err[256];
    memset(&c, 0, sizeof(c));
    assert_int_equal(svc_config_parse_redis_url(&c, "redis://:pa:ss@redis.internal:6380/3", err,
                                                sizeof(err)),
                     0);
    assert_string_equal(c.redis_host, "redis.internal");
    assert_int_equal(c.redis_port, 6380);
    assert_int_equal(c.redis_db, 3);
    assert_null(c.redis_user);
    assert_string_equal(c.redis_password, "pa:ss");
    assert_int_equal(svc_config_parse_redis_url(&c, "redis://app:secret@[::1]:7000", err, sizeof(err)),
                     0);
    assert_string_equal(c.redis_host, "::1");
    assert_string_equal(c.redis_user, "app");
    assert_string_equal(c.redis_password, "secret");
    assert_int_equal(c.redis_port, 7000);
    assert_int_equal(c.redis_db, 0);
    assert_int_equal(svc_config_parse_redis_url(&c, "redis://localhost", err, sizeof(err)), 0);
    assert_int_equal(c.redis_port, 6379);
    static const char *const bad[] = {"http://x:1", "redis://", "redis://h:0", "redis://h:99999",
                                      "redis://h:1/x", "redis://h:1/5000", "redis://secret@h",
                                      "redis://[::1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (svc_config_parse_redis_url(&c, bad[i], err, sizeof(err)) == 0)
            fail_msg("accepted %s", bad[i]);
        assert_non_null(strstr(err, "REDIS_URL"));
    }
    svc_config_free(&c);
}

static void test_listen(void **state) {
    (void)state;
    struct svc_config c;
    char err[256];
    memset(&c, 0, sizeof(c));
    assert_int_equal(svc_config_parse_listen(&c, "127.0.0.1:9000", err, sizeof(err)), 0);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 9000);
    assert_int_equal(svc_config_parse_listen(&c, "[::]:80", err, sizeof(err)), 0);
    assert_string_equal(c.listen_host, "::");
    assert_int_equal(svc_config_parse_listen(&c, ":8081", err, sizeof(err)), 0);
    assert_string_equal(c.listen_host, "0.0.0.0");
    static const char *const bad[] = {"8080", "host:", "host:port", "h:70000", "[::1]8080"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (svc_config_parse_listen(&c, bad[i], err, sizeof(err)) == 0)
            fail_msg("accepted %s", bad[i]);
        assert_non_null(strstr(err, "SUPPRESS_LISTEN"));
    }
    svc_config_free(&c);
}

static void expect_bad(const char *var, const char *value, const char *needle) {
    struct svc_config c;
    char err[256] = "";
    setenv(var, value, 1);
    int rc = svc_config_load(&c, err, sizeof(err));
    svc_config_free(&c);
    unsetenv(var);
    if (rc == 0)
        fail_msg("%s=%s accepted", var, value);
    if (strstr(err, needle) == NULL)
        fail_msg("%s=%s: error \"%s\" does not name %s", var, value, err, needle);
    assert_null(strchr(err, '\n')); /* one line */
}

static void test_invalid_values_name_the_variable(void **state) {
    (void)state;
    expect_bad("SUPPRESS_THREADS", "0", "SUPPRESS_THREADS");
    expect_bad("SUPPRESS_THREADS", "two", "SUPPRESS_THREADS");
    expect_bad("CIO_RATE_LIMIT", "-5", "CIO_RATE_LIMIT");
    expect_bad("CIO_RATE_LIMIT", "10x", "CIO_RATE_LIMIT");
    expect_bad("SUPPRESS_HTTP_TIMEOUT", "0", "SUPPRESS_HTTP_TIMEOUT");
    expect_bad("INTERCOM_REGION", "mars", "INTERCOM_REGION");
    expect_bad("CIO_REGION", "au", "CIO_REGION");
    expect_bad("CIO_TRACK_URL", "track.customer.io", "CIO_TRACK_URL");
    expect_bad("INTERCOM_API_URL", "ftp://x", "INTERCOM_API_URL");
    expect_bad("SUPPRESS_API_TOKENS", " , ,", "SUPPRESS_API_TOKENS");
    expect_bad("SUPPRESS_CHURN_TAGS", ",", "SUPPRESS_CHURN_TAGS");
    expect_bad("SUPPRESS_RULES_FILE", "/nonexistent/rules.json", "SUPPRESS_RULES_FILE");
    expect_bad("CIO_SITE_ID", "site-only", "CIO_API_KEY");
}

static void test_lists_regions_and_urls(void **state) {
    (void)state;
    struct svc_config c;
    char err[256];
    setenv("SUPPRESS_API_TOKENS", " tok-a ,tok-b,, ", 1);
    setenv("SUPPRESS_CHURN_TAGS", "Churn-Risk, At Risk ", 1);
    setenv("INTERCOM_REGION", "eu", 1);
    setenv("CIO_REGION", "EU", 1);
    setenv("CIO_SITE_ID", "site", 1);
    setenv("CIO_API_KEY", "key", 1);
    setenv("INTERCOM_CLIENT_SECRET", "", 1); /* empty means unset */
    assert_int_equal(svc_config_load(&c, err, sizeof(err)), 0);
    assert_int_equal(c.ntokens, 2);
    assert_string_equal(c.api_tokens[0], "tok-a");
    assert_string_equal(c.api_tokens[1], "tok-b");
    assert_int_equal(c.nchurn_tags, 2);
    assert_string_equal(c.churn_tags[1], "at risk");
    assert_true(svc_config_is_churn_tag(&c, "CHURN-RISK"));
    assert_false(svc_config_is_churn_tag(&c, "churn"));
    assert_string_equal(c.intercom_api_url, "https://api.eu.intercom.io");
    assert_string_equal(c.cio_track_url, "https://track-eu.customer.io");
    assert_null(c.intercom_secret);
    svc_config_free(&c);
    /* An explicit URL wins over the region, without its trailing slash. */
    setenv("CIO_TRACK_URL", "http://127.0.0.1:9999/", 1);
    assert_int_equal(svc_config_load(&c, err, sizeof(err)), 0);
    assert_string_equal(c.cio_track_url, "http://127.0.0.1:9999");
    svc_config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_redis_urls, clear_env),
        cmocka_unit_test_setup(test_listen, clear_env),
        cmocka_unit_test_setup(test_invalid_values_name_the_variable, clear_env),
        cmocka_unit_test_setup(test_lists_regions_and_urls, clear_env),
    };
    return cmocka_run_group_tests_name("svc_config", tests, NULL, NULL);
}
