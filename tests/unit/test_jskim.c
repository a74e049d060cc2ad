/* Unit tests for api_jskim: parsing a notification with the unread members dropped gives
 * exactly what parsing the whole body gives, for every real delivery shape and for
 * bodies broken inside the dropped members (same error, same words). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api_intercom.h"
#include "api/api_jskim.h"
#include "tests/unit/intercom_fixture.h"


static const char *const churn[] = {"churn-risk"};
static const char *const profile[] = {"plan", "source", "company_size"};
static const struct api_intercom_opts opts = {churn, 1, profile, 3};

static void put(char **p, size_t *room, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(*p, *room, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < *room);
    *p += n;
    *room -= (size_t)n;
}

static const char *s(const char *v) {
    return v ? v : "(null)";
}

/* Everything the parse produced, as one string, so two parses compare in one assert. */
static void describe(const struct api_intercom_doc *d, int rc, const char *err, char *buf,
                     size_t room) {
    const struct state_change *c = &d->chg;
    char *p = buf;
    put(&p, &room, "rc=%d err=%s", rc, rc ? err : "");
    if (rc != 0)
        return;
    put(&p, &room, " known=%d kind=%d topic=%s dedupe=%s at=%lld", d->known_topic, c->kind,
        s(c->topic), c->dedupe, (long long)c->event_at);
    for (size_t i = 0; i < c->ncontacts; i++)
        put(&p, &room, " contact=%s/%s", s(c->contacts[i].contact_id),
            s(c->contacts[i].external_id));
    put(&p, &room, " detached=%d ticket=%s tk=%d ts=%d prio=%d opened=%lld updated=%lld cat=%s",
        c->detached, s(c->ticket_id), c->ticket_kind, c->ticket_state, c->priority,
        (long long)c->opened_at, (long long)c->updated_at, s(c->category));
    for (size_t i = 0; i < c->ntags; i++)
        put(&p, &room, " tag=%s/%d/%lld", s(c->tags[i].name), c->tags[i].churn,
            (long long)c->tags[i].at);
    put(&p, &room, " untag=%d rating=%d/%lld merge=%s/%s role=%s created=%d", c->untag,
        c->rating, (long long)c->rating_at, s(c->merge_from.contact_id),
        s(c->merge_from.external_id), s(c->role), c->contact_created);
    char *pj = c->profile ? json_dumps(c->profile, JSON_SORT_KEYS) : NULL;
    char *sj = c->synced ? json_dumps(c->synced, JSON_SORT_KEYS) : NULL;
    put(&p, &room, " profile=%s synced=%s", s(pj), s(sj));
    free(pj);
    free(sj);
}

/* Parses body with and without the skim and requires the same outcome. Returns the
 * skimmed length (-1 when the skim declined). */
static long same_both_ways(const char *body, size_t len, const char *what) {
    static char with[8192], without[8192];
    struct api_intercom_doc doc;
    char err[512] = "";

    api_intercom_skim = 1;
    int rc = api_intercom_parse(&doc, body, len, &opts, err, sizeof(err));
    describe(&doc, rc, err, with, sizeof(with));
    api_intercom_free(&doc);

    api_intercom_skim = 0;
    err[0] = '\0';
    rc = api_intercom_parse(&doc, body, len, &opts, err, sizeof(err));
    describe(&doc, rc, err, without, sizeof(without));
    api_intercom_free(&doc);
    api_intercom_skim = 1;

    if (strcmp(with, without) != 0)
        fail_msg("%s: skimmed and whole parses differ\n  skimmed: %s\n  whole:   %s", what, with,
                 without);
    char *out = malloc(len + 1);
    assert_non_null(out);
    long n = api_jskim(body, len, out, opts.profile_attrs, opts.nprofile_attrs);
    /* A skimmed copy of a body jansson accepts must be accepted too, or every parse would
     * quietly fall back to the whole body. */
    json_t *whole = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (whole != NULL && n >= 0) {
        json_t *skimmed = json_loadb(out, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
        if (skimmed == NULL)
            fail_msg("%s: the skimmed copy is not valid JSON", what);
        json_decref(skimmed);
    }
    json_decref(whole);
    free(out);
    return n;
}

static void test_every_fixture_same_both_ways(void **state) {
    (void)state;
    FILE *p = popen("ls " FIXDIR " | grep '\\.json$'", "r");
    assert_non_null(p);
    char name[256];
    int files = 0, shrunk = 0;
    while (fgets(name, sizeof(name), p)) {
        name[strcspn(name, "\n")] = '\0';
        size_t len;
        char *body = read_fixture(name, &len);
        long n = same_both_ways(body, len, name);
        /* Conversations and tickets carry statistics, source, ticket_type...: the skim
         * must actually drop them, or it buys nothing. */
        if (n >= 0 && (size_t)n < len * 3 / 4)
            shrunk++;
        files++;
        free(body);
    }
    pclose(p);
    assert_true(files >= 40);
    assert_true(shrunk >= 20);
}

/* Replaces the first `from` in the fixture with `to` and checks both parses agree. */
static void mutate(const char *fixture, const char *from, const char *to, int want_ok) {
    size_t len;
    char *body = read_fixture(fixture, &len);
    char *at = strstr(body, from);
    if (at == NULL)
        fail_msg("%s has no %s", fixture, from);
    size_t fl = strlen(from), tl = strlen(to);
    char *m = malloc(len - fl + tl + 1);
    assert_non_null(m);
    size_t head = (size_t)(at - body);
    memcpy(m, body, head);
    memcpy(m + head, to, tl);
    memcpy(m + head + tl, at + fl, len - head - fl);
    size_t mlen = len - fl + tl;
    m[mlen] = '\0';
    same_both_ways(m, mlen, to);
    struct api_intercom_doc doc;
    char err[512];
    int rc = api_intercom_parse(&doc, m, mlen, &opts, err, sizeof(err));
    if ((rc == 0) != want_ok)
        fail_msg("%s with %s: rc %d (%s)", fixture, to, rc, rc ? err : "accepted");
    api_intercom_free(&doc);
    free(m);
    free(body);
}

#define CONV "conversation_admin_closed.json"

/* Broken inside a dropped member: the body is still refused, with jansson's own error. */
static void test_errors_inside_dropped_members(void **state) {
    (void)state;
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"a\": 1, \"a\": 2, ", 0);
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"a\": 1e999, ", 0);
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"a\": 123456789012345678901, ", 0);
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"a\": 01, ", 0);
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"a\": [1,], ", 0);
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"a\": tru, ", 0);
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"a\": \"\\u0000\", ", 0);
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"a\": \"\\udc00\", ", 0);
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"a\": \"\\ud800x\", ", 0);
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"a\": \"\\q\", ", 0);
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"a\": \"\xc3\x28\", ", 0);
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"a\": \"\xe0\x80\x80\", ", 0);
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"a\": \"\xed\xa0\x80\", ", 0);
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"a\": \"tab\there\", ", 0);
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"st\\u0061ts\": 1, \"stats\": 2, ", 0);
    /* the same member twice, and a duplicate spelled with an escape */
    mutate(CONV, "\"statistics\": {", "\"statistics\": 1, \"statistics\": {", 0);
    mutate(CONV, "\"statistics\": {", "\"st\\u0061tistics\": 1, \"statistics\": {", 0);
    /* broken outside the dropped members, and after the document */
    mutate(CONV, "\"state\": \"closed\"", "\"state\": \"closed\", \"state\": \"open\"", 0);
    mutate(CONV, "\"type\": \"notification_event\"", "\"type\": \"notification_event\",", 0);
}

/* Valid but unusual content in a dropped member changes nothing. */
static void test_unusual_valid_dropped_members(void **state) {
    (void)state;
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"a\": \"\\ud83d\\ude00 \\\"q\\\" \\n\", ", 1);
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"a\": \"caf\xc3\xa9 \xf0\x9f\x98\x80\", ", 1);
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"a\": [[], {}, -0.5, 0, true, null], ", 1);
    mutate(CONV, "\"statistics\": {", "\"statistics\": {\"deep\": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]], ", 1);
}

/* A configured profile attribute is never dropped, even with an unread member's name. */
static void test_profile_attribute_kept(void **state) {
    (void)state;
    static const char body[] =
        "{\"type\":\"notification_event\",\"id\":\"notif_p\",\"topic\":\"contact.user.created\","
        "\"created_at\":1768000000,\"data\":{\"type\":\"notification_event_data\",\"item\":"
        "{\"type\":\"contact\",\"id\":\"65a1f0c2e4b0a1b2c3d40009\",\"external_id\":\"u-9\","
        "\"role\":\"user\",\"source\":\"ads\",\"statistics\":{\"x\":1}}}}";
    same_both_ways(body, sizeof(body) - 1, "profile");
    struct api_intercom_doc doc;
    char err[256];
    assert_int_equal(api_intercom_parse(&doc, body, sizeof(body) - 1, &opts, err, sizeof(err)), 0);
    assert_non_null(doc.chg.profile);
    assert_string_equal(json_string_value(json_object_get(doc.chg.profile, "source")), "ads");
    api_intercom_free(&doc);
    char out[sizeof(body)];
    long n = api_jskim(body, sizeof(body) - 1, out, profile, 3);
    assert_true(n > 0);
    out[n] = '\0';
    assert_non_null(strstr(out, "\"source\""));
    assert_null(strstr(out, "\"statistics\""));
}

static void test_declines_what_it_cannot_vouch_for(void **state) {
    (void)state;
    char out[64];
    static const char *const bodies[] = {
        "[1]", "", "  ", "{\"a\":1} x", "{\"a\":1", "{\"a\" 1}", "{a:1}",
        "{\"data\":{\"item\":{\"statistics\":{\"x\":1e5}}}}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
        assert_int_equal(api_jskim(bodies[i], strlen(bodies[i]), out, NULL, 0), -1);
    static const char ok[] = " {\"data\" : {\"item\":{\"id\":1, \"source\":{\"b\":[1,2]},\"x\":\"}\"}} } ";
    long n = api_jskim(ok, sizeof(ok) - 1, out, NULL, 0);
    assert_true(n > 0);
    out[n] = '\0';
    assert_string_equal(out, "{\"data\":{\"item\":{\"id\":1,\"x\":\"}\"}}}");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_fixture_same_both_ways),
        cmocka_unit_test(test_errors_inside_dropped_members),
        cmocka_unit_test(test_unusual_valid_dropped_members),
        cmocka_unit_test(test_profile_attribute_kept),
        cmocka_unit_test(test_declines_what_it_cannot_vouch_for),
    };
    return cmocka_run_group_tests_name("api_jskim", tests, NULL, NULL);
}
