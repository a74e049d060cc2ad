/* Unit tests for state_user_from_fields (reading a user hash) and state_ulid. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "state/state_ulid.h"
#include "state/state_user.h"

static void parse(struct state_user *u, const char *const *kv, size_t n) {
    const char *f[32], *v[32];
    size_t fl[32], vl[32];
    for (size_t i = 0; i < n; i++) {
        f[i] = kv[2 * i];
        v[i] = kv[2 * i + 1];
        fl[i] = strlen(f[i]);
        vl[i] = strlen(v[i]);
    }
    assert_int_equal(state_user_from_fields(u, n, f, fl, v, vl), 0);
}

static void test_open_tickets_listed_oldest_first(void **state) {
    (void)state;
    static const char *const kv[] = {
        /* kind|state|prio|updated-opened|updated|notified-updated|recorded-updated */
        "t:200", "c|o|1|100|1768000300|1|5",
        "t:100", "t|s|0|50|1768000150|1|0",
        "t:300", "c|c|0|350|1768000400|1|0",  /* closed: not listed */
        "t:400", "c|d|1|10|1768000020|1|0",   /* deleted: not listed */
        "n", "2", "pa", "1768000200", "ca", "1768000500", "cu", "0",
        "cs", "2", "ct", "1768000600", "ck", "200", "ua", "1768000700",
        "sv", "5", "d:0123456789abcdef", "1768000000",
    };
    struct state_user u;
    parse(&u, kv, sizeof(kv) / sizeof(kv[0]) / 2);
    assert_int_equal(u.ntickets, 2);
    assert_string_equal(u.tickets[0].id, "100");
    assert_int_equal(u.tickets[0].kind, STATE_KIND_TICKET);
    assert_int_equal(u.tickets[0].state, STATE_TICKET_SNOOZED);
    assert_int_equal(u.tickets[0].priority, 0);
    assert_string_equal(u.tickets[1].id, "200");
    assert_int_equal(u.tickets[1].state, STATE_TICKET_OPEN);
    assert_int_equal(u.tickets[1].priority, 1);
    assert_int_equal(u.tickets[1].opened_at, 1768000200);
    assert_int_equal(u.tickets[1].updated_at, 1768000300);
    assert_int_equal(u.facts.open_tickets, 2);
    assert_int_equal(u.facts.priority_opened_at, 1768000200);
    assert_int_equal(u.facts.churn_tagged_at, 1768000500);
    assert_int_equal(u.facts.csat_score, 2);
    assert_int_equal(u.facts.csat_at, 1768000600);
    assert_string_equal(u.csat_ticket, "200");
    assert_int_equal(u.updated_at, 1768000700);
    state_user_clear(&u);
}

static void test_empty_and_malformed(void **state) {
    (void)state;
    struct state_user u;
    parse(&u, NULL, 0);
    assert_int_equal(u.ntickets, 0);
    assert_int_equal(u.updated_at, 0);
    assert_null(u.csat_ticket);
    state_user_clear(&u);
    static const char *const kv[] = {"t:1", "garbage", "t:2", "c|o|x|y|z|w", "pa", "12a"};
    parse(&u, kv, 3);
    /* Unreadable entries are skipped rather than invented. */
    assert_true(u.ntickets <= 1);
    assert_int_equal(u.facts.priority_opened_at, 0);
    state_user_clear(&u);
}

static void test_ulid_shape(void **state) {
    (void)state;
    char a[STATE_ULID_LEN + 1], b[STATE_ULID_LEN + 1];
    state_ulid_new(a, 1768000000123ull);
    state_ulid_new(b, 1768000000123ull);
    assert_int_equal(strlen(a), 26);
    assert_true(strspn(a, "0123456789ABCDEFGHJKMNPQRSTVWXYZ") == 26);
    /* Same millisecond: same 10-char time prefix, different randomness. */
    assert_memory_equal(a, b, 10);
    assert_string_not_equal(a, b);
    /* The time prefix sorts by time and encodes it (spec example: 0 ms = "0000000000"). */
    char z[STATE_ULID_LEN + 1], later[STATE_ULID_LEN + 1];
    state_ulid_new(z, 0);
    assert_memory_equal(z, "0000000000", 10);
    state_ulid_new(later, 1768000000124ull);
    assert_true(memcmp(a, later, 10) < 0);
    state_ulid_new(z, 1469918176385ull); /* the spec's example time */
    assert_memory_equal(z, "01ARYZ6S41", 10);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_tickets_listed_oldest_first),
        cmocka_unit_test(test_empty_and_malformed),
        cmocka_unit_test(test_ulid_shape),
    };
    return cmocka_run_group_tests_name("state_user", tests, NULL, NULL);
}
