/* Unit tests for api_customerio: Customer.io reporting webhooks -> Intercom data events,
 * and the SUPPRESS_CIO_EVENTS allow-list/mapping it depends on. Bodies follow the
 * verbatim and schema-derived examples of Customer.io's reporting webhook spec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api_customerio.h"
#include "svc/svc_config.h"

static const char OPENED[] =
    "{\"event_id\":\"01E4C4CT6YDC7Y5M7FE1GWWPQJ\",\"object_type\":\"email\",\"metric\":\"opened\","
    "\"timestamp\":1613063089,\"data\":{\"campaign_id\":7,\"action_id\":42,"
    "\"journey_id\":\"01GW20GXAAXBKZD8J96M8FNV3R\",\"customer_id\":\"42\","
    "\"delivery_id\":\"RPIyMTM6OjEyMzQ=\",\"identifiers\":{\"id\":\"42\",\"email\":"
    "\"test@example.com\",\"cio_id\":\"d9c106000001\"},\"recipient\":\"test@example.com\","
    "\"subject\":\"Your ticket was resolved\",\"proxied\":false,\"prefetched\":false,"
    "\"synthetic\":false}}";

static const char CLICKED[] =
    "{\"event_id\":\"01E4C4CT6YDC7Y5M7FE1GWWPQK\",\"object_type\":\"email\",\"metric\":\"clicked\","
    "\"timestamp\":1613063100,\"data\":{\"campaign_id\":7,\"action_id\":42,\"customer_id\":\"42\","
    "\"delivery_id\":\"RPIyMTM6OjEyMzQ=\",\"identifiers\":{\"id\":\"42\",\"email\":"
    "\"test@example.com\",\"cio_id\":\"d9c106000001\"},\"recipient\":\"test@example.com\","
    "\"subject\":\"Your ticket was resolved\",\"href\":\"https://docs.customer.io\","
    "\"link_id\":1,\"machine\":false}}";

static const char SUBSCRIBED[] =
    "{\"metric\":\"subscribed\",\"event_id\":\"01E4C4CT6YDC7Y5M7FE1GWWPQJ\",\"object_type\":"
    "\"customer\",\"timestamp\":1613063089,\"data\":{\"customer_id\":\"0200000001\","
    "\"email_address\":\"test@example.com\",\"identifiers\":{\"id\":\"42\",\"email\":"
    "\"test@example.com\",\"cio_id\":\"d9c106000001\"}}}";

static const char SMS_SENT[] =
    "{\"metric\":\"sent\",\"event_id\":\"01E4C4CT6YDC7Y5M7FE1GWWPQJ\",\"object_type\":\"sms\","
    "\"timestamp\":1613063089,\"data\":{\"action_id\":42,\"broadcast_id\":9,"
    "\"customer_id\":\"0200000001\",\"delivery_id\":\"RPILAgUBcRhIBqSfeiIwdIYJKxTY\","
    "\"identifiers\":{\"id\":\"42\",\"email\":\"test@example.com\",\"cio_id\":\"d9c106000001\"},"
    "\"recipient\":\"+15551234567\"}}";

static struct svc_config cfg;

static int load(const char *events, const char *fallback) {
    char err[256];
    svc_config_free(&cfg);
    unsetenv("SUPPRESS_CIO_EVENTS");
    unsetenv("SUPPRESS_CIO_EMAIL_FALLBACK");
    if (events)
        setenv("SUPPRESS_CIO_EVENTS", events, 1);
    if (fallback)
        setenv("SUPPRESS_CIO_EMAIL_FALLBACK", fallback, 1);
    int rc = svc_config_load(&cfg, err, sizeof(err));
    if (rc < 0)
        print_message("config: %s\n", err);
    return rc;
}

static int setup(void **state) {
    (void)state;
    return load(NULL, NULL);
}

static int teardown(void **state) {
    (void)state;
    svc_config_free(&cfg);
    return 0;
}

static enum api_cio_verdict parse(const char *body, struct api_cio_event *ev, char *why) {
    return api_cio_parse(body, strlen(body), &cfg, ev, why, 256);
}

static void test_opened_becomes_one_intercom_event(void **state) {
    (void)state;
    struct api_cio_event ev;
    char why[256];
    assert_int_equal(parse(OPENED, &ev, why), API_CIO_FORWARD);
    assert_string_equal(ev.event_id, "01E4C4CT6YDC7Y5M7FE1GWWPQJ");
    assert_string_equal(ev.user_id, "42");
    json_t *e = ev.event;
    assert_string_equal(json_string_value(json_object_get(e, "event_name")), "cio_email_opened");
    assert_int_equal(json_integer_value(json_object_get(e, "created_at")), 1613063089);
    assert_string_equal(json_string_value(json_object_get(e, "user_id")), "42");
    assert_null(json_object_get(e, "email"));
    json_t *m = json_object_get(e, "metadata");
    assert_int_equal(json_integer_value(json_object_get(m, "campaign_id")), 7);
    assert_int_equal(json_integer_value(json_object_get(m, "action_id")), 42);
    assert_string_equal(json_string_value(json_object_get(m, "delivery_id")), "RPIyMTM6OjEyMzQ=");
    assert_string_equal(json_string_value(json_object_get(m, "subject")),
                        "Your ticket was resolved");
    assert_string_equal(json_string_value(json_object_get(m, "recipient")), "test@example.com");
    /* booleans and nested objects never reach Intercom's flat metadata */
    assert_null(json_object_get(m, "proxied"));
    assert_null(json_object_get(m, "identifiers"));
    assert_true(json_object_size(m) <= API_CIO_MAX_METADATA);
    json_decref(e);
}

static void test_clicked_keeps_the_link(void **state) {
    (void)state;
    struct api_cio_event ev;
    char why[256];
    assert_int_equal(parse(CLICKED, &ev, why), API_CIO_FORWARD);
    json_t *m = json_object_get(ev.event, "metadata");
    assert_string_equal(json_string_value(json_object_get(ev.event, "event_name")),
                        "cio_email_clicked");
    assert_string_equal(json_string_value(json_object_get(m, "href")), "https://docs.customer.io");
    assert_int_equal(json_integer_value(json_object_get(m, "link_id")), 1);
    json_decref(ev.event);
}

static void test_customer_subscribed_is_forwarded(void **state) {
    (void)state;
    struct api_cio_event ev;
    char why[256];
    assert_int_equal(parse(SUBSCRIBED, &ev, why), API_CIO_FORWARD);
    assert_string_equal(json_string_value(json_object_get(ev.event, "event_name")),
                        "cio_customer_subscribed");
    json_decref(ev.event);
}

static void test_metrics_outside_the_allow_list_are_ignored(void **state) {
    (void)state;
    struct api_cio_event ev;
    char why[256];
    assert_int_equal(parse(SMS_SENT, &ev, why), API_CIO_IGNORE);
    assert_non_null(strstr(why, "sms_sent"));
    assert_null(ev.event);
}

static void test_mapping_renames_and_restricts(void **state) {
    (void)state;
    assert_int_equal(load("email_clicked=Clicked marketing email, sms_sent", NULL), 0);
    struct api_cio_event ev;
    char why[256];
    assert_int_equal(parse(CLICKED, &ev, why), API_CIO_FORWARD);
    assert_string_equal(json_string_value(json_object_get(ev.event, "event_name")),
                        "Clicked marketing email");
    json_decref(ev.event);
    assert_int_equal(parse(SMS_SENT, &ev, why), API_CIO_FORWARD);
    assert_string_equal(json_string_value(json_object_get(ev.event, "event_name")), "cio_sms_sent");
    json_decref(ev.event);
    assert_int_equal(parse(OPENED, &ev, why), API_CIO_IGNORE);
}

static void test_bad_mappings_are_refused_at_start(void **state) {
    (void)state;
    assert_int_equal(load("Email_Opened", NULL), -1);
    assert_int_equal(load("opened", NULL), -1);
    assert_int_equal(load("email_opened=", NULL), -1);
    assert_int_equal(load(NULL, "2"), -1);
}

static void test_email_fallback_only_when_configured(void **state) {
    (void)state;
    static const char NO_ID[] =
        "{\"event_id\":\"e1\",\"object_type\":\"email\",\"metric\":\"opened\",\"timestamp\":5,"
        "\"data\":{\"identifiers\":{\"id\":null,\"email\":\"a@b.co\"},\"subject\":\"s\"}}";
    struct api_cio_event ev;
    char why[256];
    assert_int_equal(parse(NO_ID, &ev, why), API_CIO_IGNORE);
    assert_non_null(strstr(why, "identifiers.id"));
    assert_int_equal(load(NULL, "1"), 0);
    assert_int_equal(parse(NO_ID, &ev, why), API_CIO_FORWARD);
    assert_string_equal(json_string_value(json_object_get(ev.event, "email")), "a@b.co");
    assert_null(json_object_get(ev.event, "user_id"));
    json_decref(ev.event);
}

static void test_numeric_ids_become_strings(void **state) {
    (void)state;
    static const char NUM[] =
        "{\"event_id\":\"e2\",\"object_type\":\"email\",\"metric\":\"sent\",\"timestamp\":5,"
        "\"data\":{\"identifiers\":{\"id\":4242}}}";
    struct api_cio_event ev;
    char why[256];
    assert_int_equal(parse(NUM, &ev, why), API_CIO_FORWARD);
    assert_string_equal(ev.user_id, "4242");
    json_decref(ev.event);
}

static void test_long_subject_is_cut_on_a_character_boundary(void **state) {
    (void)state;
    char subject[600] = "";
    for (int i = 0; i < 200; i++)
        strcat(subject, "\xc3\xa9"); /* 400 bytes of "é" */
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"event_id\":\"e3\",\"object_type\":\"email\",\"metric\":\"sent\",\"timestamp\":5,"
             "\"data\":{\"identifiers\":{\"id\":\"u\"},\"subject\":\"%s\"}}", subject);
    struct api_cio_event ev;
    char why[256];
    assert_int_equal(parse(body, &ev, why), API_CIO_FORWARD);
    const char *s = json_string_value(json_object_get(json_object_get(ev.event, "metadata"),
                                                      "subject"));
    assert_non_null(s);
    assert_int_equal(strlen(s), 254);
    json_decref(ev.event);
}

static void test_malformed_bodies_are_invalid(void **state) {
    (void)state;
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "{\"object_type\":\"email\",\"metric\":\"opened\",\"timestamp\":5,\"data\":{}}",
        "{\"event_id\":\"\",\"object_type\":\"email\",\"metric\":\"opened\",\"timestamp\":5,"
        "\"data\":{}}",
        "{\"event_id\":7,\"object_type\":\"email\",\"metric\":\"opened\",\"timestamp\":5,"
        "\"data\":{}}",
        "{\"event_id\":\"e\",\"metric\":\"opened\",\"timestamp\":5,\"data\":{}}",
        "{\"event_id\":\"e\",\"object_type\":\"email\",\"metric\":\"opened\","
        "\"timestamp\":\"5\",\"data\":{}}",
        "{\"event_id\":\"e\",\"object_type\":\"email\",\"metric\":\"opened\",\"timestamp\":5}",
        "{\"event_id\":\"e\",\"object_type\":\"email\",\"metric\":\"opened\",\"timestamp\":5,"
        "\"data\":{\"identifiers\":\"42\"}}",
        "{\"event_id\":\"e\",\"event_id\":\"f\",\"object_type\":\"email\",\"metric\":\"opened\","
        "\"timestamp\":5,\"data\":{}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct api_cio_event ev;
        char why[256] = "";
        assert_int_equal(api_cio_parse(bad[i], strlen(bad[i]), &cfg, &ev, why, sizeof(why)),
                         API_CIO_INVALID);
        assert_true(why[0] != '\0');
        assert_null(ev.event);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_opened_becomes_one_intercom_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clicked_keeps_the_link, setup, teardown),
        cmocka_unit_test_setup_teardown(test_customer_subscribed_is_forwarded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_outside_the_allow_list_are_ignored, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mapping_renames_and_restricts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_mappings_are_refused_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_email_fallback_only_when_configured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_numeric_ids_become_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_subject_is_cut_on_a_character_boundary, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_malformed_bodies_are_invalid, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
