/* Unit tests for svc_cio: identify attributes, window ends, the event taxonomy,
 * Customer.io's limits, path escaping and per-item batch errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "svc/svc_cio.h"

#define DAY 86400
static const int64_t now = 1800000000;

static void test_attributes_from_state(void **state) {
    (void)state;
    struct state_rules rules;
    state_rules_default(&rules);
    char tid[] = "1";
    struct state_user_ticket t = {.id = tid, .state = STATE_TICKET_OPEN};
    struct state_user u = {0};
    u.ntickets = 1;
    u.tickets = &t;
    u.facts.open_tickets = 1;
    u.facts.csat_score = 2;
    u.facts.csat_at = now - DAY;
    u.facts.churn_tagged_at = now - 20 * DAY; /* outside the 14-day window */
    json_t *profile = json_pack("{s:s, s:b}", "plan", "pro", "has_open_ticket", 0);
    json_t *a = cio_attributes(&u, profile, &rules, now);
    assert_true(json_is_true(json_object_get(a, "has_open_ticket"))); /* ours win */
    assert_int_equal(json_integer_value(json_object_get(a, "open_ticket_count")), 1);
    assert_true(json_is_false(json_object_get(a, "churn_risk")));
    assert_int_equal(json_integer_value(json_object_get(a, "churn_risk_at")), now - 20 * DAY);
    assert_int_equal(json_integer_value(json_object_get(a, "last_csat_score")), 2);
    assert_int_equal(json_integer_value(json_object_get(a, "last_csat_at")), now - DAY);
    assert_true(json_is_true(json_object_get(a, "support_suppressed_commercial")));
    assert_true(json_is_true(json_object_get(a, "support_suppressed_renewal")));
    assert_true(json_is_false(json_object_get(a, "support_suppressed_feature_adoption")));
    assert_string_equal(json_string_value(json_object_get(a, "plan")), "pro");
    assert_true(json_is_true(json_object_get(a, "_update")));
    assert_int_equal(json_integer_value(json_object_get(a, "_timestamp")), now);
    json_decref(a);
    json_decref(profile);

    /* Unknown facts are omitted, not sent as 0. */
    struct state_user empty = {0};
    a = cio_attributes(&empty, NULL, &rules, now);
    assert_null(json_object_get(a, "last_csat_score"));
    assert_null(json_object_get(a, "churn_risk_at"));
    assert_true(json_is_false(json_object_get(a, "has_open_ticket")));
    json_decref(a);
}

static void test_next_window_end(void **state) {
    (void)state;
    struct state_rules rules;
    state_rules_default(&rules);
    struct state_user u = {0};
    assert_int_equal(cio_next_window_end(&u, &rules, now), 0);
    u.facts.churn_tagged_at = now - DAY;            /* ends now + 13 days */
    u.facts.priority_opened_at = now - 6 * DAY;     /* ends now + 1 day: the earliest */
    u.facts.csat_score = 4;                          /* not low: no window */
    u.facts.csat_at = now;
    assert_int_equal(cio_next_window_end(&u, &rules, now), now + DAY);
    u.facts.priority_opened_at = now - 8 * DAY;     /* already over */
    assert_int_equal(cio_next_window_end(&u, &rules, now), now + 13 * DAY);
    u.facts.churn_untagged_at = now;                /* removed: no churn window */
    assert_int_equal(cio_next_window_end(&u, &rules, now), 0);
}

static void test_event_taxonomy(void **state) {
    (void)state;
    struct cio_taxonomy t;
    const char *why = NULL;
    cio_taxonomy_default(&t);
    const char *rec = "{\"id\":\"01ARYZ6S41TSV4RRFFQ69G5FAV\",\"name\":\"support_ticket_opened\","
                      "\"ts\":1768000000,\"data\":{\"ticket_id\":\"9\",\"priority\":true,"
                      "\"category\":\"conversation\",\"internal\":1}}";
    json_t *ev = cio_event(rec, &t, &why);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "name")), "support_ticket_opened");
    assert_string_equal(json_string_value(json_object_get(ev, "id")), "01ARYZ6S41TSV4RRFFQ69G5FAV");
    assert_int_equal(json_integer_value(json_object_get(ev, "timestamp")), 1768000000);
    json_t *d = json_object_get(ev, "data");
    assert_int_equal(json_object_size(d), 3); /* only the taxonomy's properties */
    assert_null(json_object_get(d, "internal"));
    json_decref(ev);

    char err[256];
    json_t *doc = json_loads("{\"support_ticket_opened\":{\"name\":\"ticket_opened\","
                             "\"properties\":[\"ticket_id\"]},\"support_tag_applied\":false}",
                             0, NULL);
    assert_int_equal(cio_taxonomy_parse(&t, doc, err, sizeof(err)), 0);
    json_decref(doc);
    ev = cio_event(rec, &t, &why);
    assert_string_equal(json_string_value(json_object_get(ev, "name")), "ticket_opened");
    assert_int_equal(json_object_size(json_object_get(ev, "data")), 1);
    json_decref(ev);
    assert_null(cio_event("{\"id\":\"x\",\"name\":\"support_tag_applied\",\"ts\":1,\"data\":{}}",
                          &t, &why));
    assert_string_equal(why, "event_disabled");
    assert_null(cio_event("not json", &t, &why));
    assert_string_equal(why, "unreadable_event_record");

    static const char *const bad[] = {"[]", "{\"support_ticket_closed\":true}",
                                      "{\"support_ticket_opened\":{\"name\":\"\"}}",
                                      "{\"support_ticket_opened\":{\"properties\":\"x\"}}",
                                      "{\"support_ticket_opened\":7}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cio_taxonomy before;
        cio_taxonomy_default(&t);
        before = t;
        doc = json_loads(bad[i], 0, NULL);
        assert_int_equal(cio_taxonomy_parse(&t, doc, err, sizeof(err)), -1);
        assert_memory_equal(&t, &before, sizeof(t));
        json_decref(doc);
    }
}

static void test_limits(void **state) {
    (void)state;
    char buf[256];
    char id[200];
    memset(id, 'i', 151);
    id[151] = '\0';
    json_t *a = json_pack("{s:b}", "has_open_ticket", 1);
    assert_null(cio_check_identify("u-1", a, buf, sizeof(buf)));
    assert_non_null(strstr(cio_check_identify(id, a, buf, sizeof(buf)), "id_too_long"));
    id[150] = '\0';
    assert_null(cio_check_identify(id, a, buf, sizeof(buf)));
    char *big = malloc(1002);
    memset(big, 'x', 1001);
    big[1001] = '\0';
    json_object_set_new(a, "plan", json_string(big));
    assert_non_null(strstr(cio_check_identify("u-1", a, buf, sizeof(buf)),
                           "attribute_value_too_long: plan"));
    big[1000] = '\0';
    json_object_set_new(a, "plan", json_string(big));
    assert_null(cio_check_identify("u-1", a, buf, sizeof(buf)));
    free(big);
    json_decref(a);

    json_t *ev = json_pack("{s:s, s:{}}", "name", "support_ticket_opened", "data");
    assert_null(cio_check_event(ev, buf, sizeof(buf)));
    char name[120];
    memset(name, 'n', 101);
    name[101] = '\0';
    json_object_set_new(ev, "name", json_string(name));
    assert_non_null(cio_check_event(ev, buf, sizeof(buf)));
    json_decref(ev);
}

static void test_path_escape(void **state) {
    (void)state;
    char *e = cio_path_escape("a+b@c.com/x y~_-");
    assert_string_equal(e, "a%2Bb%40c.com%2Fx%20y~_-");
    free(e);
    e = cio_path_escape("\xc3\xa9");
    assert_string_equal(e, "%C3%A9");
    free(e);
}

static void collect(size_t index, const char *message, void *arg) {
    size_t *seen = arg;
    seen[index] = strlen(message);
}

static void test_batch_errors(void **state) {
    (void)state;
    size_t seen[4] = {0};
    const char *body = "{\"errors\":[{\"batch_index\":2,\"reason\":\"invalid\",\"field\":\"id\","
                       "\"message\":\"too long\"},{\"batch_index\":0,\"message\":\"bad\"}]}";
    assert_int_equal(cio_batch_errors(body, strlen(body), collect, seen), 2);
    assert_true(seen[2] > 0);
    assert_true(seen[0] > 0);
    assert_int_equal(seen[1], 0);
    assert_int_equal(cio_batch_errors("{}", 2, collect, seen), 0);
    assert_int_equal(cio_batch_errors("<html>", 6, collect, seen), -1);
}

static void test_ops(void **state) {
    (void)state;
    json_t *attrs = json_pack("{s:b}", "has_open_ticket", 1);
    json_t *op = cio_op_identify("u-1", attrs, now);
    assert_string_equal(json_string_value(json_object_get(op, "type")), "person");
    assert_string_equal(json_string_value(json_object_get(op, "action")), "identify");
    assert_string_equal(json_string_value(json_object_get(json_object_get(op, "identifiers"), "id")),
                        "u-1");
    assert_ptr_equal(json_object_get(op, "attributes"), attrs);
    json_decref(op);
    json_t *ev = json_pack("{s:s, s:s, s:I, s:{s:s}}", "name", "n", "id", "ULID", "timestamp",
                           (json_int_t)5, "data", "k", "v");
    op = cio_op_event("u-1", ev);
    assert_string_equal(json_string_value(json_object_get(op, "action")), "event");
    assert_string_equal(json_string_value(json_object_get(op, "id")), "ULID");
    /* v2 carries event data under "attributes". */
    assert_string_equal(json_string_value(json_object_get(json_object_get(op, "attributes"), "k")),
                        "v");
    json_decref(op);
    json_decref(ev);
    json_decref(attrs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attributes_from_state),
        cmocka_unit_test(test_next_window_end),
        cmocka_unit_test(test_event_taxonomy),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_path_escape),
        cmocka_unit_test(test_batch_errors),
        cmocka_unit_test(test_ops),
    };
    return cmocka_run_group_tests_name("svc_cio", tests, NULL, NULL);
}
