/* Unit tests for state_rules: the default table, window boundaries, rules files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "state/state_rules.h"

#define DAY 86400
static const int64_t now = 1800000000;

static unsigned campaign_held(const struct state_rules *r, const char *name,
                              const struct state_facts *f) {
    const struct state_campaign *c = state_rules_find(r, name);
    assert_non_null(c);
    return state_rules_conditions(r, f, now) & c->conds;
}

#define BIT(c) (1u << (c))

static void test_default_table(void **state) {
    (void)state;
    struct state_rules r;
    state_rules_default(&r);
    assert_int_equal(r.ncampaigns, 4);
    struct state_facts open = {.open_tickets = 1};
    assert_int_equal(campaign_held(&r, "commercial", &open), BIT(STATE_COND_OPEN_TICKET));
    assert_int_equal(campaign_held(&r, "expansion", &open), BIT(STATE_COND_OPEN_TICKET));
    assert_int_equal(campaign_held(&r, "renewal", &open), BIT(STATE_COND_OPEN_TICKET));
    assert_int_equal(campaign_held(&r, "feature_adoption", &open), 0);
    struct state_facts none = {0};
    for (size_t i = 0; i < r.ncampaigns; i++)
        assert_int_equal(campaign_held(&r, r.campaigns[i].name, &none), 0);
    assert_null(state_rules_find(&r, "upsell"));
}

static void test_priority_window_boundary(void **state) {
    (void)state;
    struct state_rules r;
    state_rules_default(&r);
    /* Opened 7 days minus one second ago: inside; exactly 7 days ago: outside. */
    struct state_facts f = {.priority_opened_at = now - 7 * DAY + 1};
    assert_int_equal(campaign_held(&r, "expansion", &f), BIT(STATE_COND_RECENT_PRIORITY_TICKET));
    f.priority_opened_at = now - 7 * DAY;
    assert_int_equal(campaign_held(&r, "expansion", &f), 0);
    /* A priority ticket does not suppress commercial campaigns by itself. */
    f.priority_opened_at = now - 60;
    assert_int_equal(campaign_held(&r, "commercial", &f), 0);
    /* An opened_at in the future (clock skew) counts as recent. */
    f.priority_opened_at = now + 300;
    assert_int_equal(campaign_held(&r, "expansion", &f), BIT(STATE_COND_RECENT_PRIORITY_TICKET));
}

static void test_csat_window_and_threshold(void **state) {
    (void)state;
    struct state_rules r;
    state_rules_default(&r);
    struct state_facts f = {.csat_score = 2, .csat_at = now - 30 * DAY + 1};
    assert_int_equal(campaign_held(&r, "renewal", &f), BIT(STATE_COND_LOW_CSAT));
    f.csat_at = now - 30 * DAY;
    assert_int_equal(campaign_held(&r, "renewal", &f), 0);
    f.csat_at = now - DAY;
    f.csat_score = 3;
    assert_int_equal(campaign_held(&r, "renewal", &f), 0);
    f.csat_score = 1;
    assert_int_equal(campaign_held(&r, "renewal", &f), BIT(STATE_COND_LOW_CSAT));
    f.csat_score = 0; /* no rating */
    assert_int_equal(campaign_held(&r, "renewal", &f), 0);
}

static void test_churn_window_and_removal(void **state) {
    (void)state;
    struct state_rules r;
    state_rules_default(&r);
    struct state_facts f = {.churn_tagged_at = now - 14 * DAY + 1};
    assert_true(state_rules_churn_active(&r, &f, now));
    assert_int_equal(campaign_held(&r, "feature_adoption", &f), BIT(STATE_COND_CHURN_RISK));
    f.churn_tagged_at = now - 14 * DAY;
    assert_false(state_rules_churn_active(&r, &f, now));
    /* Removed after it was applied: off; applied again after the removal: on. */
    f.churn_tagged_at = now - DAY;
    f.churn_untagged_at = now - 60;
    assert_false(state_rules_churn_active(&r, &f, now));
    f.churn_tagged_at = now - 30;
    assert_true(state_rules_churn_active(&r, &f, now));
}

static void test_reasons_in_contract_order(void **state) {
    (void)state;
    struct state_rules r;
    state_rules_default(&r);
    struct state_facts f = {.open_tickets = 2, .priority_opened_at = now - DAY};
    assert_int_equal(campaign_held(&r, "expansion", &f),
                     BIT(STATE_COND_OPEN_TICKET) | BIT(STATE_COND_RECENT_PRIORITY_TICKET));
    assert_string_equal(state_cond_name(STATE_COND_OPEN_TICKET), "open_ticket");
    assert_string_equal(state_cond_name(STATE_COND_RECENT_PRIORITY_TICKET), "recent_priority_ticket");
    assert_string_equal(state_cond_name(STATE_COND_LOW_CSAT), "low_csat");
    assert_string_equal(state_cond_name(STATE_COND_CHURN_RISK), "churn_risk");
}

static int parse(struct state_rules *r, const char *text, char *err, size_t errlen) {
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr);
    assert_non_null(doc);
    int rc = state_rules_parse_json(r, doc, err, errlen);
    json_decref(doc);
    return rc;
}

static void test_rules_file_overrides(void **state) {
    (void)state;
    struct state_rules r;
    char err[256];
    state_rules_default(&r);
    assert_int_equal(parse(&r,
                           "{\"windows\":{\"churn_risk\":5,\"low_csat\":60},\"low_csat_max\":3,"
                           "\"campaigns\":{\"winback\":[\"churn_risk\",\"low_csat\"],"
                           "\"newsletter\":[\"open_ticket\"]}}",
                           err, sizeof(err)),
                     0);
    assert_int_equal(r.ncampaigns, 2);
    assert_int_equal(r.churn_window, 5);
    assert_int_equal(r.csat_window, 60);
    assert_int_equal(r.priority_window, 7 * DAY); /* untouched */
    assert_null(state_rules_find(&r, "renewal"));
    struct state_facts f = {.csat_score = 3, .csat_at = now - 59, .churn_tagged_at = now - 5};
    assert_int_equal(campaign_held(&r, "winback", &f), BIT(STATE_COND_LOW_CSAT));
    /* Windows only: the default campaigns stay. */
    state_rules_default(&r);
    assert_int_equal(parse(&r, "{\"windows\":{\"recent_priority_ticket\":10}}", err, sizeof(err)), 0);
    assert_int_equal(r.ncampaigns, 4);
    assert_int_equal(r.priority_window, 10);
}

static void test_rules_file_errors_leave_rules_unchanged(void **state) {
    (void)state;
    static const char *const bad[] = {
        "[]",
        "{\"campaign\":{}}",
        "{\"windows\":{\"churn\":5}}",
        "{\"windows\":{\"churn_risk\":0}}",
        "{\"windows\":{\"churn_risk\":\"5\"}}",
        "{\"low_csat_max\":9}",
        "{\"campaigns\":{}}",
        "{\"campaigns\":{\"x\":[]}}",
        "{\"campaigns\":{\"x\":[\"vip\"]}}",
        "{\"campaigns\":{\"x\":\"open_ticket\"}}",
        "{\"campaigns\":{\"Bad Name\":[\"open_ticket\"]}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct state_rules r, before;
        char err[256] = "";
        state_rules_default(&r);
        before = r;
        if (parse(&r, bad[i], err, sizeof(err)) == 0)
            fail_msg("accepted %s", bad[i]);
        assert_true(strlen(err) > 0);
        assert_memory_equal(&r, &before, sizeof(r));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_table),
        cmocka_unit_test(test_priority_window_boundary),
        cmocka_unit_test(test_csat_window_and_threshold),
        cmocka_unit_test(test_churn_window_and_removal),
        cmocka_unit_test(test_reasons_in_contract_order),
        cmocka_unit_test(test_rules_file_overrides),
        cmocka_unit_test(test_rules_file_errors_leave_rules_unchanged),
    };
    return cmocka_run_group_tests_name("state_rules", tests, NULL, NULL);
}
