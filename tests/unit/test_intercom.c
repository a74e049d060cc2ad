/* Unit tests for api_intercom: every delivery shape in tests/fixtures/intercom/ parses to
 * the expected normalized change, and malformed payloads are refused with a reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api_intercom.h"
#include "api/api_jarena.h"
#include "tests/unit/intercom_fixture.h"

#define C1 "65a1f0c2e4b0a1b2c3d40001"
#define C2 "65a1f0c2e4b0a1b2c3d40002"
#define C3 "65a1f0c2e4b0a1b2c3d40003"

static const char *const churn[] = {"churn-risk", "at-risk"};
static const struct api_intercom_opts opts = {churn, 2};

/* What a fixture must parse to. NULL/0/-1 fields are "not expected to be set". */
struct expect {
    const char *file;
    enum state_change_kind kind;
    const char *ticket_id;
    enum state_ticket_kind tkind;
    enum state_ticket_state state;
    int priority;
    int64_t opened_at, updated_at;
    const char *contact_id, *external_id; /* contacts[0] */
    size_t ncontacts;
    const char *tag;                      /* tags[0] */
    int churn;
    int64_t tag_at;
    int untag;
    int rating;
    int64_t rating_at;
    int detached;
    int64_t event_at;
};

static const struct expect cases[] = {
    {"conversation_user_created.json", STATE_CHANGE_TICKET, "200000000000001", STATE_KIND_CONVERSATION,
     STATE_TICKET_OPEN, 0, 1768003600, 1768003600, C1, "u-1001", 1, NULL, 0, 0, 0, 0, 0, 0, 1768003600},
    {"conversation_user_created.v1.json", STATE_CHANGE_TICKET, "200000000000002", STATE_KIND_CONVERSATION,
     STATE_TICKET_OPEN, -1, 1768060000, 1768060000, C2, "u-1002", 1, NULL, 0, 0, 0, 0, 0, 0, 1768060000},
    {"conversation_user_replied.json", STATE_CHANGE_TICKET, "200000000000001", STATE_KIND_CONVERSATION,
     STATE_TICKET_OPEN, 0, 1768003600, 1768005000, C1, "u-1001", 1, NULL, 0, 0, 0, 0, 0, 0, 1768005000},
    {"conversation_admin_single_created.json", STATE_CHANGE_TICKET, "200000000000004",
     STATE_KIND_CONVERSATION, STATE_TICKET_CLOSED, 0, 1768040000, 1768040000, C2, "u-1002", 1, NULL, 0,
     0, 0, 0, 0, 0, 1768040000},
    {"conversation_admin_opened.json", STATE_CHANGE_TICKET, "200000000000001", STATE_KIND_CONVERSATION,
     STATE_TICKET_OPEN, 1, 1768003600, 1768120000, C1, "u-1001", 1, NULL, 0, 0, 0, 2, 1768052001, 0,
     1768120000},
    {"conversation_admin_opened.v1.json", STATE_CHANGE_TICKET, "200000000000002", STATE_KIND_CONVERSATION,
     STATE_TICKET_OPEN, -1, 1768060000, 1768100000, C2, "u-1002", 1, NULL, 0, 0, 0, 0, 0, 0, 1768100000},
    {"conversation_admin_closed.json", STATE_CHANGE_TICKET, "200000000000001", STATE_KIND_CONVERSATION,
     STATE_TICKET_CLOSED, 1, 1768003600, 1768052000, C1, "u-1001", 1, NULL, 0, 0, 0, 0, 0, 0, 1768052000},
    {"conversation_admin_closed.v1.json", STATE_CHANGE_TICKET, "200000000000002", STATE_KIND_CONVERSATION,
     STATE_TICKET_CLOSED, -1, 1768060000, 1768070000, C2, "u-1002", 1, NULL, 0, 0, 0, 0, 0, 0, 1768070000},
    {"conversation_admin_snoozed.json", STATE_CHANGE_TICKET, "200000000000001", STATE_KIND_CONVERSATION,
     STATE_TICKET_SNOOZED, 1, 1768003600, 1768006200, C1, "u-1001", 1, NULL, 0, 0, 0, 0, 0, 0, 1768006200},
    {"conversation_admin_snoozed.v1.json", STATE_CHANGE_TICKET, "200000000000002", STATE_KIND_CONVERSATION,
     STATE_TICKET_SNOOZED, -1, 1768060000, 1768061000, C2, "u-1002", 1, NULL, 0, 0, 0, 0, 0, 0, 1768061000},
    {"conversation_admin_unsnoozed.json", STATE_CHANGE_TICKET, "200000000000001", STATE_KIND_CONVERSATION,
     STATE_TICKET_OPEN, 1, 1768003600, 1768050000, C1, "u-1001", 1, NULL, 0, 0, 0, 0, 0, 0, 1768050000},
    {"conversation_admin_replied.json", STATE_CHANGE_TICKET, "200000000000001", STATE_KIND_CONVERSATION,
     STATE_TICKET_OPEN, 0, 1768003600, 1768004300, C1, "u-1001", 1, NULL, 0, 0, 0, 0, 0, 0, 1768004300},
    {"conversation_admin_assigned.json", STATE_CHANGE_TICKET, "200000000000001", STATE_KIND_CONVERSATION,
     STATE_TICKET_OPEN, 0, 1768003600, 1768004000, C1, "u-1001", 1, NULL, 0, 0, 0, 0, 0, 0, 1768004000},
    {"conversation_admin_open_assigned.json", STATE_CHANGE_TICKET, "200000000000003",
     STATE_KIND_CONVERSATION, STATE_TICKET_OPEN, 0, 1768030000, 1768030400, C3, NULL, 1, NULL, 0, 0, 0,
     0, 0, 0, 1768030401},
    {"conversation_admin_noted.json", STATE_CHANGE_TICKET, "200000000000001", STATE_KIND_CONVERSATION,
     STATE_TICKET_OPEN, 0, 1768003600, 1768005400, C1, "u-1001", 1, NULL, 0, 0, 0, 0, 0, 0, 1768005400},
    {"conversation_operator_replied.json", STATE_CHANGE_TICKET, "200000000000001", STATE_KIND_CONVERSATION,
     STATE_TICKET_OPEN, 0, 1768003600, 1768003604, C1, "u-1001", 1, NULL, 0, 0, 0, 0, 0, 0, 1768003604},
    {"conversation_read.json", STATE_CHANGE_TICKET, "200000000000001", STATE_KIND_CONVERSATION,
     STATE_TICKET_OPEN, 0, 1768003600, 1768003604, C1, "u-1001", 1, NULL, 0, 0, 0, 0, 0, 0, 1768003660},
    {"conversation_priority_updated.json", STATE_CHANGE_TICKET, "200000000000001", STATE_KIND_CONVERSATION,
     STATE_TICKET_OPEN, 1, 1768003600, 1768005600, C1, "u-1001", 1, NULL, 0, 0, 0, 0, 0, 0, 1768005600},
    {"conversation_rating_added.json", STATE_CHANGE_TICKET, "200000000000001", STATE_KIND_CONVERSATION,
     STATE_TICKET_CLOSED, 1, 1768003600, 1768053000, C1, "u-1001", 1, NULL, 0, 0, 0, 2, 1768052001, 0,
     1768053000},
    /* 2.x: the tag comes from the notified part (its own time); 1.x from tags_added. */
    {"conversation_part_tag_created.json", STATE_CHANGE_TICKET, "200000000000001", STATE_KIND_CONVERSATION,
     STATE_TICKET_OPEN, 1, 1768003600, 1768005600, C1, "u-1001", 1, "churn-risk", 1, 1768005000, 0, 0, 0,
     0, 1768005900},
    {"conversation_part_tag_created.v1.json", STATE_CHANGE_TICKET, "200000000000002",
     STATE_KIND_CONVERSATION, STATE_TICKET_OPEN, -1, 1768060000, 1768060300, C2, "u-1002", 1,
     "churn-risk", 1, 1768060500, 0, 0, 0, 0, 1768060500},
    {"conversation_deleted.json", STATE_CHANGE_TICKET_DELETED, "200000000000005", STATE_KIND_CONVERSATION,
     STATE_TICKET_UNKNOWN, -1, 0, 0, NULL, NULL, 0, NULL, 0, 0, 0, 0, 0, 0, 1768140000},
    /* Attach/detach: the contact is item.contact; the conversation id arrives as an integer. */
    {"conversation_contact_attached.json", STATE_CHANGE_TICKET, "200000000000003",
     STATE_KIND_CONVERSATION, STATE_TICKET_OPEN, -1, 0, 0, C2, "u-1002", 1, NULL, 0, 0, 0, 0, 0, 0,
     1768031001},
    {"conversation_contact_detached.json", STATE_CHANGE_TICKET, "200000000000003",
     STATE_KIND_CONVERSATION, STATE_TICKET_OPEN, -1, 0, 0, C2, "u-1002", 1, NULL, 0, 0, 0, 0, 0, 1,
     1768031501},
    {"ticket_created.json", STATE_CHANGE_TICKET, "300000000000001", STATE_KIND_TICKET, STATE_TICKET_OPEN,
     -1, 1768080000, 1768080003, C1, "u-1001", 1, NULL, 0, 0, 0, 0, 0, 0, 1768080004},
    {"ticket_state_updated.json", STATE_CHANGE_TICKET, "300000000000001", STATE_KIND_TICKET,
     STATE_TICKET_OPEN, -1, 1768080000, 1768083000, C1, "u-1001", 1, NULL, 0, 0, 0, 0, 0, 0, 1768083000},
    {"ticket_state_updated.string.json", STATE_CHANGE_TICKET, "300000000000001", STATE_KIND_TICKET,
     STATE_TICKET_OPEN, -1, 1768080000, 1768083000, C1, "u-1001", 1, NULL, 0, 0, 0, 0, 0, 0, 1768083000},
    /* Real ticket.closed: contacts are {id, role}, no external_id. */
    {"ticket_closed.json", STATE_CHANGE_TICKET, "300000000000001", STATE_KIND_TICKET, STATE_TICKET_CLOSED,
     -1, 1768080000, 1768090000, C1, NULL, 1, NULL, 0, 0, 0, 0, 0, 0, 1768090001},
    {"ticket_resolved.json", STATE_CHANGE_TICKET, "300000000000001", STATE_KIND_TICKET,
     STATE_TICKET_CLOSED, -1, 1768080000, 1768090000, C1, "u-1001", 1, NULL, 0, 0, 0, 0, 0, 0, 1768090001},
    {"ticket_contact_attached.json", STATE_CHANGE_TICKET, "300000000000001", STATE_KIND_TICKET,
     STATE_TICKET_OPEN, -1, 0, 1768085000, C2, "u-1002", 1, NULL, 0, 0, 0, 0, 0, 0, 1768085000},
    {"ticket_contact_detached.json", STATE_CHANGE_TICKET, "300000000000001", STATE_KIND_TICKET,
     STATE_TICKET_OPEN, -1, 0, 1768086000, C2, "u-1002", 1, NULL, 0, 0, 0, 0, 0, 1, 1768086000},
    {"contact_user_tag_created.json", STATE_CHANGE_CONTACT_TAG, NULL, 0, 0, -1, 0, 0, C1, "u-1001", 1,
     "churn-risk", 1, 1768054000, 0, 0, 0, 0, 1768054000},
    {"contact_user_tag_deleted.json", STATE_CHANGE_CONTACT_TAG, NULL, 0, 0, -1, 0, 0, C1, "u-1001", 1,
     "churn-risk", 1, 1768125000, 1, 0, 0, 0, 1768125000},
    {"contact_lead_tag_created.json", STATE_CHANGE_CONTACT_TAG, NULL, 0, 0, -1, 0, 0, C3, NULL, 1,
     "churn-risk", 1, 1768032000, 0, 0, 0, 0, 1768032000},
    {"contact_lead_tag_deleted.json", STATE_CHANGE_CONTACT_TAG, NULL, 0, 0, -1, 0, 0, C3, NULL, 1,
     "churn-risk", 1, 1768034999, 1, 0, 0, 0, 1768034999},
    {"user_tag_created.json", STATE_CHANGE_CONTACT_TAG, NULL, 0, 0, -1, 0, 0, C2, "u-1002", 1,
     "churn-risk", 1, 1768072000, 0, 0, 0, 0, 1768072000},
    {"user_tag_deleted.json", STATE_CHANGE_CONTACT_TAG, NULL, 0, 0, -1, 0, 0, C2, "u-1002", 1,
     "churn-risk", 1, 1768110000, 1, 0, 0, 0, 1768110000},
    {"contact_user_created.json", STATE_CHANGE_CONTACT, NULL, 0, 0, -1, 0, 0, C1, "u-1001", 1, NULL, 0, 0,
     0, 0, 0, 0, 1768000001},
    /* The real merge delivery names only the survivor: it links, it cannot move anything. */
    {"contact_merged.json", STATE_CHANGE_CONTACT, NULL, 0, 0, -1, 0, 0, C2, "u-1002", 1, NULL, 0, 0, 0, 0,
     0, 0, 1768190001},
    {"ping.json", STATE_CHANGE_NONE, NULL, 0, 0, -1, 0, 0, NULL, NULL, 0, NULL, 0, 0, 0, 0, 0, 0,
     1767999900},
};

static void check_case(const struct expect *e) {
    size_t len = 0;
    char *body = read_fixture(e->file, &len);
    struct api_intercom_doc doc;
    char err[256] = "";
    int rc = api_intercom_parse(&doc, body, len, &opts, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s: parse failed: %s", e->file, err);
    const struct state_change *c = &doc.chg;
    assert_int_equal(c->kind, e->kind);
    assert_int_equal(c->event_at, e->event_at);
    assert_int_equal(strlen(c->dedupe), 16);
    if (e->ticket_id != NULL) {
        assert_non_null(c->ticket_id);
        assert_string_equal(c->ticket_id, e->ticket_id);
        assert_int_equal(c->ticket_kind, e->tkind);
        assert_int_equal(c->ticket_state, e->state);
        assert_int_equal(c->priority, e->priority);
        if (e->opened_at)
            assert_int_equal(c->opened_at, e->opened_at);
        if (e->updated_at)
            assert_int_equal(c->updated_at, e->updated_at);
    }
    assert_int_equal(c->ncontacts, e->ncontacts);
    if (e->ncontacts > 0) {
        assert_string_equal(c->contacts[0].contact_id, e->contact_id);
        if (e->external_id == NULL)
            assert_null(c->contacts[0].external_id);
        else
            assert_string_equal(c->contacts[0].external_id, e->external_id);
    }
    if (e->tag != NULL) {
        assert_true(c->ntags >= 1);
        assert_string_equal(c->tags[0].name, e->tag);
        assert_int_equal(c->tags[0].churn, e->churn);
        assert_int_equal(c->tags[0].at, e->tag_at);
    } else if (e->kind == STATE_CHANGE_TICKET && strstr(e->file, "tag") == NULL) {
        assert_int_equal(c->ntags, 0); /* only tag topics apply tags */
    }
    assert_int_equal(c->untag, e->untag);
    assert_int_equal(c->rating, e->rating);
    if (e->rating)
        assert_int_equal(c->rating_at, e->rating_at);
    assert_int_equal(c->detached, e->detached);
    api_intercom_free(&doc);
    free(body);
}

static void test_every_fixture(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fprintf(stderr, "  %s\n", cases[i].file); /* names the file if an assert fails */
        check_case(&cases[i]);
    }
}

/* Every file in the fixture folder must be covered by the table above. */
static void test_table_covers_fixture_folder(void **state) {
    (void)state;
    FILE *p = popen("ls " FIXDIR " | grep '\\.json$'", "r");
    assert_non_null(p);
    char line[256];
    int n = 0;
    while (fgets(line, sizeof(line), p)) {
        line[strcspn(line, "\n")] = '\0';
        int found = 0;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
            found |= strcmp(cases[i].file, line) == 0;
        if (!found)
            fail_msg("fixture %s has no expectation in test_intercom.c", line);
        n++;
    }
    pclose(p);
    assert_int_equal((size_t)n, sizeof(cases) / sizeof(cases[0]));
}

/*---------------------------------------------------------------------------
 * Built edge cases
 *--------------------------------------------------------------------------*/

static int parse_str(const char *json, struct api_intercom_doc *doc, char *err, size_t errlen) {
    return api_intercom_parse(doc, json, strlen(json), &opts, err, errlen);
}

static void expect_error(const char *json, const char *needle) {
    struct api_intercom_doc doc;
    char err[256] = "";
    int rc = parse_str(json, &doc, err, sizeof(err));
    if (rc == 0)
        fail_msg("accepted: %s", json);
    if (strstr(err, needle) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", err, needle);
    api_intercom_free(&doc);
}

#define ENV(topic, item) \
    "{\"type\":\"notification_event\",\"id\":\"notif_1\",\"topic\":\"" topic "\"," \
    "\"created_at\":1768000000,\"data\":{\"type\":\"notification_event_data\",\"item\":" item "}}"

static void test_rejects_non_notifications(void **state) {
    (void)state;
    expect_error("", "not valid JSON");
    expect_error("{\"type\":", "not valid JSON");
    expect_error("[1,2]", "must be a JSON object");
    expect_error("{\"topic\":\"ping\",\"data\":{\"item\":{}}}", "notification_event");
    expect_error("{\"type\":\"notification_event\",\"data\":{\"item\":{}}}", "topic");
    expect_error("{\"type\":\"notification_event\",\"topic\":\"ping\"}", "data");
    expect_error("{\"type\":\"notification_event\",\"topic\":\"ping\",\"data\":{}}", "data.item");
    expect_error("{\"type\":\"notification_event\",\"topic\":\"ping\",\"data\":{\"item\":[]}}",
                 "data.item");
    /* Duplicate keys would let two readers see two different payloads. */
    expect_error("{\"type\":\"notification_event\",\"type\":\"x\"}", "not valid JSON");
}

static void test_rejects_wrong_types(void **state) {
    (void)state;
    expect_error("{\"type\":\"notification_event\",\"topic\":7,\"data\":{\"item\":{}}}", "topic");
    expect_error(ENV("conversation.admin.closed", "{\"type\":\"conversation\",\"id\":{}}"),
                 "data.item.id");
    expect_error(ENV("conversation.admin.closed", "{\"type\":\"conversation\",\"id\":\"1\",\"state\":3}"),
                 "data.item.state");
    expect_error(ENV("conversation.admin.closed",
                     "{\"type\":\"conversation\",\"id\":\"1\",\"open\":\"yes\"}"),
                 "data.item.open");
    expect_error(ENV("conversation.admin.closed",
                     "{\"type\":\"conversation\",\"id\":\"1\",\"state\":\"open\",\"contacts\":[]}"),
                 "contacts");
    expect_error(ENV("conversation.admin.closed",
                     "{\"type\":\"conversation\",\"id\":\"1\",\"updated_at\":\"yesterday\"}"),
                 "updated_at");
    expect_error(ENV("ticket.state.updated", "{\"type\":\"ticket\",\"id\":\"1\",\"ticket_state\":5}"),
                 "ticket_state");
    expect_error(ENV("conversation.rating.added",
                     "{\"type\":\"conversation\",\"id\":\"1\",\"conversation_rating\":{\"rating\":9}}"),
                 "rating");
    expect_error(ENV("contact.user.tag.created", "{\"type\":\"contact_tag\",\"contact\":{\"id\":\"c\"}}"),
                 "tag");
    expect_error(ENV("conversation.deleted", "{\"type\":\"conversation\"}"), "conversation_id");
    expect_error("{\"type\":\"notification_event\",\"id\":5,\"topic\":\"ping\",\"data\":{\"item\":{}}}",
                 "id");
    expect_error("{\"type\":\"notification_event\",\"created_at\":\"soon\",\"topic\":\"ping\","
                 "\"data\":{\"item\":{}}}",
                 "created_at");
}

static void test_external_id_too_long(void **state) {
    (void)state;
    char json[1200];
    char id[300];
    memset(id, 'x', 257);
    id[257] = '\0';
    snprintf(json, sizeof(json),
             ENV("conversation.admin.closed",
                 "{\"type\":\"conversation\",\"id\":\"1\",\"state\":\"open\",\"contacts\":{\"contacts\":"
                 "[{\"id\":\"c1\",\"external_id\":\"%s\"}]}}"),
             id);
    expect_error(json, "longer than 256");
}

static void test_unknown_topic_is_ignored(void **state) {
    (void)state;
    struct api_intercom_doc doc;
    char err[256];
    assert_int_equal(parse_str(ENV("company.created", "{\"type\":\"company\",\"id\":7}"), &doc, err,
                               sizeof(err)),
                     0);
    assert_int_equal(doc.chg.kind, STATE_CHANGE_NONE);
    assert_int_equal(doc.known_topic, 0);
    api_intercom_free(&doc);
}

static void test_state_from_item_not_topic(void **state) {
    (void)state;
    struct api_intercom_doc doc;
    char err[256];
    /* A "closed" topic carrying an open conversation is open (a reply reopened it). */
    assert_int_equal(parse_str(ENV("conversation.admin.closed",
                                   "{\"type\":\"conversation\",\"id\":\"9\",\"state\":\"open\"}"),
                               &doc, err, sizeof(err)),
                     0);
    assert_int_equal(doc.chg.ticket_state, STATE_TICKET_OPEN);
    api_intercom_free(&doc);
    /* Without `state`, `open` decides. */
    assert_int_equal(parse_str(ENV("conversation.admin.opened",
                                   "{\"type\":\"conversation\",\"id\":\"9\",\"open\":false}"),
                               &doc, err, sizeof(err)),
                     0);
    assert_int_equal(doc.chg.ticket_state, STATE_TICKET_CLOSED);
    api_intercom_free(&doc);
    /* Ticket categories: everything except resolved is open, in both shapes. */
    static const char *const open_cats[] = {"submitted", "in_progress", "waiting_on_customer"};
    for (int i = 0; i < 3; i++) {
        char json[512];
        snprintf(json, sizeof(json),
                 ENV("ticket.state.updated",
                     "{\"type\":\"ticket\",\"id\":\"9\",\"ticket_state\":{\"category\":\"%s\"}}"),
                 open_cats[i]);
        assert_int_equal(parse_str(json, &doc, err, sizeof(err)), 0);
        assert_int_equal(doc.chg.ticket_state, STATE_TICKET_OPEN);
        api_intercom_free(&doc);
        snprintf(json, sizeof(json),
                 ENV("ticket.state.updated", "{\"type\":\"ticket\",\"id\":\"9\",\"ticket_state\":\"%s\"}"),
                 open_cats[i]);
        assert_int_equal(parse_str(json, &doc, err, sizeof(err)), 0);
        assert_int_equal(doc.chg.ticket_state, STATE_TICKET_OPEN);
        api_intercom_free(&doc);
    }
    assert_int_equal(parse_str(ENV("ticket.state.updated",
                                   "{\"type\":\"ticket\",\"id\":\"9\",\"ticket_state\":\"resolved\","
                                   "\"open\":true}"),
                               &doc, err, sizeof(err)),
                     0);
    assert_int_equal(doc.chg.ticket_state, STATE_TICKET_CLOSED);
    api_intercom_free(&doc);
}

static void test_nested_ticket_closed(void **state) {
    (void)state;
    struct api_intercom_doc doc;
    char err[256];
    /* API 2.15+ nests the ticket under data.item.ticket. */
    assert_int_equal(parse_str(ENV("ticket.closed",
                                   "{\"type\":\"ticket_closed\",\"ticket\":{\"type\":\"ticket\","
                                   "\"id\":\"77\",\"ticket_state\":{\"category\":\"resolved\"},"
                                   "\"updated_at\":1768000500,\"contacts\":{\"contacts\":"
                                   "[{\"id\":\"c9\",\"role\":\"user\"}]}}}"),
                               &doc, err, sizeof(err)),
                     0);
    assert_string_equal(doc.chg.ticket_id, "77");
    assert_int_equal(doc.chg.ticket_kind, STATE_KIND_TICKET);
    assert_int_equal(doc.chg.ticket_state, STATE_TICKET_CLOSED);
    assert_int_equal(doc.chg.updated_at, 1768000500);
    assert_int_equal(doc.chg.ncontacts, 1);
    assert_string_equal(doc.chg.contacts[0].contact_id, "c9");
    assert_null(doc.chg.contacts[0].external_id);
    api_intercom_free(&doc);
}

static void test_tags_case_insensitive_and_times(void **state) {
    (void)state;
    struct api_intercom_doc doc;
    char err[256];
    assert_int_equal(parse_str(ENV("contact.user.tag.created",
                                   "{\"type\":\"contact_tag\",\"tag\":{\"name\":\"Churn-RISK\"},"
                                   "\"contact\":{\"id\":\"c1\",\"external_id\":\"u1\"}}"),
                               &doc, err, sizeof(err)),
                     0);
    assert_int_equal(doc.chg.tags[0].churn, 1);
    assert_int_equal(doc.chg.tags[0].at, 1768000000); /* no item time: the envelope's */
    api_intercom_free(&doc);
    assert_int_equal(parse_str(ENV("contact.user.tag.created",
                                   "{\"type\":\"contact_tag\",\"tag\":{\"name\":\"VIP\"},"
                                   "\"contact\":{\"id\":\"c1\",\"external_id\":\"u1\"}}"),
                               &doc, err, sizeof(err)),
                     0);
    assert_int_equal(doc.chg.tags[0].churn, 0);
    api_intercom_free(&doc);
}

static void test_null_id_dedupes_on_body(void **state) {
    (void)state;
    struct api_intercom_doc a, b, c;
    char err[256];
    const char *p1 = "{\"type\":\"notification_event\",\"id\":null,\"topic\":\"conversation.read\","
                     "\"data\":{\"item\":{\"type\":\"conversation\",\"id\":\"1\",\"state\":\"open\"}}}";
    const char *p2 = "{\"type\":\"notification_event\",\"id\":null,\"topic\":\"conversation.read\","
                     "\"data\":{\"item\":{\"type\":\"conversation\",\"id\":\"2\",\"state\":\"open\"}}}";
    assert_int_equal(parse_str(p1, &a, err, sizeof(err)), 0);
    assert_int_equal(parse_str(p1, &b, err, sizeof(err)), 0);
    assert_int_equal(parse_str(p2, &c, err, sizeof(err)), 0);
    assert_string_equal(a.chg.dedupe, b.chg.dedupe);
    assert_string_not_equal(a.chg.dedupe, c.chg.dedupe);
    api_intercom_free(&a);
    api_intercom_free(&b);
    api_intercom_free(&c);
}

static void test_same_id_same_dedupe_across_bodies(void **state) {
    (void)state;
    struct api_intercom_doc a, b;
    char err[256];
    assert_int_equal(parse_str(ENV("conversation.read",
                                   "{\"type\":\"conversation\",\"id\":\"1\",\"state\":\"open\"}"),
                               &a, err, sizeof(err)),
                     0);
    /* A retry has delivery_attempts bumped: a different body, the same notification. */
    assert_int_equal(parse_str("{\"type\":\"notification_event\",\"id\":\"notif_1\",\"delivery_attempts\":2,"
                               "\"topic\":\"conversation.read\",\"created_at\":1768000000,\"data\":"
                               "{\"item\":{\"type\":\"conversation\",\"id\":\"1\",\"state\":\"open\"}}}",
                               &b, err, sizeof(err)),
                     0);
    assert_string_equal(a.chg.dedupe, b.chg.dedupe);
    api_intercom_free(&a);
    api_intercom_free(&b);
}

static void test_iso8601(void **state) {
    (void)state;
    int64_t t;
    assert_int_equal(api_intercom_parse_iso8601("2026-01-10T04:22:28.240+00:00", &t), 0);
    assert_int_equal(t, 1768018948);
    assert_int_equal(api_intercom_parse_iso8601("2026-01-10T07:56:29.000Z", &t), 0);
    assert_int_equal(t, 1768031789);
    assert_int_equal(api_intercom_parse_iso8601("2026-01-10T09:56:29+02:00", &t), 0);
    assert_int_equal(t, 1768031789);
    assert_int_equal(api_intercom_parse_iso8601("1970-01-01T00:00:00Z", &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(api_intercom_parse_iso8601("2024-02-29T00:00:00Z", &t), 0);
    assert_int_equal(t, 1709164800);
    assert_int_equal(api_intercom_parse_iso8601("2023-02-29T00:00:00Z", &t), -1);
    assert_int_equal(api_intercom_parse_iso8601("2026-01-10T07:56:29", &t), -1); /* no zone */
    assert_int_equal(api_intercom_parse_iso8601("2026-01-10", &t), -1);
    assert_int_equal(api_intercom_parse_iso8601("yesterday", &t), -1);
    assert_int_equal(api_intercom_parse_iso8601("2026-13-10T07:56:29Z", &t), -1);
}

static void test_integer_ids_and_ms_times(void **state) {
    (void)state;
    struct api_intercom_doc doc;
    char err[256];
    assert_int_equal(parse_str(ENV("conversation.admin.closed",
                                   "{\"type\":\"conversation\",\"id\":215472621202693,\"state\":\"closed\","
                                   "\"created_at\":1768031789000,\"updated_at\":\"2026-01-10T08:00:00Z\","
                                   "\"contacts\":{\"contacts\":[{\"id\":\"c1\",\"external_id\":\"\"}]}}"),
                               &doc, err, sizeof(err)),
                     0);
    assert_string_equal(doc.chg.ticket_id, "215472621202693");
    assert_int_equal(doc.chg.opened_at, 1768031789);
    assert_int_equal(doc.chg.updated_at, 1768032000);
    /* An empty external_id is no external_id. */
    assert_null(doc.chg.contacts[0].external_id);
    api_intercom_free(&doc);
}

/*---------------------------------------------------------------------------
 * Parse arenas (api_jarena): the tests above run once with jansson on malloc and once
 * with the hooks installed; these check what only the arena path does.
 *--------------------------------------------------------------------------*/

/* A tree far larger than the first chunk (sized from the body) spills into more. */
static void test_arena_grows_past_first_chunk(void **state) {
    (void)state;
    char *body = malloc(400000);
    assert_non_null(body);
    size_t n = (size_t)snprintf(body, 400000, "%s",
                                "{\"type\":\"notification_event\",\"id\":\"notif_big\","
                                "\"topic\":\"conversation.admin.noted\",\"created_at\":1768000000,"
                                "\"data\":{\"item\":{\"type\":\"conversation\",\"id\":\"77\","
                                "\"state\":\"open\",\"contacts\":{\"contacts\":[{\"id\":\"c1\","
                                "\"external_id\":\"u1\"}]},\"conversation_parts\":{\"conversation_parts\":[");
    /* Tiny elements in a short body: many nodes per byte, well beyond the ratio. */
    for (int i = 0; i < 20000; i++)
        n += (size_t)snprintf(body + n, 400000 - n, "%s{\"a\":[%d]}", i ? "," : "", i);
    n += (size_t)snprintf(body + n, 400000 - n, "]}}}}");
    struct api_intercom_doc doc;
    char err[256];
    assert_int_equal(api_intercom_parse(&doc, body, n, &opts, err, sizeof(err)), 0);
    assert_string_equal(doc.chg.ticket_id, "77");
    assert_string_equal(doc.chg.contacts[0].external_id, "u1");
    if (api_jarena_installed()) {
        assert_non_null(doc.heap);
        assert_true(api_jarena_used(doc.heap) > 10 * n);
    }
    api_intercom_free(&doc);
    free(body);
}

/* Profile and synced attributes live in the doc's arena; state_apply borrows them into a
 * malloc'd change object that it dumps and releases before the doc goes. */
static void test_arena_profile_borrowed(void **state) {
    (void)state;
    static const char *const attrs[] = {"plan", "name"};
    struct api_intercom_opts o = opts;
    o.profile_attrs = attrs;
    o.nprofile_attrs = 2;
    size_t len = 0;
    char *body = read_fixture("contact_user_created.json", &len);
    struct api_intercom_doc doc;
    char err[256];
    assert_int_equal(api_intercom_parse(&doc, body, len, &o, err, sizeof(err)), 0);
    assert_non_null(doc.chg.profile);
    assert_non_null(doc.chg.synced);
    json_t *c = json_object(); /* outside the parse: malloc */
    json_object_set_new(c, "at", json_integer(1));
    json_object_set(c, "attrs", (json_t *)(uintptr_t)doc.chg.profile);
    json_object_set(c, "synced", (json_t *)(uintptr_t)doc.chg.synced);
    char *text = json_dumps(c, JSON_COMPACT);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"attrs\":{"));
    free(text); /* json_dumps's buffer is plain malloc outside a parse */
    json_decref(c);
    api_intercom_free(&doc);
    api_intercom_free(&doc); /* a freed doc is a zeroed doc */
    free(body);
}

/* Two docs alive at once (several webhooks in flight on one loop), freed out of order,
 * with jansson used in between. */
static void test_arena_interleaved_docs(void **state) {
    (void)state;
    size_t la = 0, lb = 0;
    char *a_body = read_fixture("conversation_admin_closed.json", &la);
    char *b_body = read_fixture("conversation_contact_attached.json", &lb);
    struct api_intercom_doc a, b;
    char err[256];
    assert_int_equal(api_intercom_parse(&a, a_body, la, &opts, err, sizeof(err)), 0);
    json_t *between = json_pack("{s:s, s:[i,i]}", "k", "v", "l", 1, 2);
    assert_int_equal(api_intercom_parse(&b, b_body, lb, &opts, err, sizeof(err)), 0);
    const char *a_ticket = a.chg.ticket_id;
    api_intercom_free(&b);
    assert_string_equal(a_ticket, a.chg.ticket_id);
    assert_int_equal(a.chg.ticket_state, STATE_TICKET_CLOSED);
    json_decref(between);
    api_intercom_free(&a);
    free(a_body);
    free(b_body);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_fixture),
        cmocka_unit_test(test_table_covers_fixture_folder),
        cmocka_unit_test(test_rejects_non_notifications),
        cmocka_unit_test(test_rejects_wrong_types),
        cmocka_unit_test(test_external_id_too_long),
        cmocka_unit_test(test_unknown_topic_is_ignored),
        cmocka_unit_test(test_state_from_item_not_topic),
        cmocka_unit_test(test_nested_ticket_closed),
        cmocka_unit_test(test_tags_case_insensitive_and_times),
        cmocka_unit_test(test_null_id_dedupes_on_body),
        cmocka_unit_test(test_same_id_same_dedupe_across_bodies),
        cmocka_unit_test(test_iso8601),
        cmocka_unit_test(test_integer_ids_and_ms_times),
        cmocka_unit_test(test_arena_grows_past_first_chunk),
        cmocka_unit_test(test_arena_profile_borrowed),
        cmocka_unit_test(test_arena_interleaved_docs),
    };
    /* First with jansson on malloc (no hooks), then as the service runs: hooks installed,
     * every parse in its own arena. */
    int failed = cmocka_run_group_tests_name("api_intercom (malloc)", tests, NULL, NULL);
    api_jarena_install();
    failed += cmocka_run_group_tests_name("api_intercom (arena)", tests, NULL, NULL);
    return failed;
}
