/* Unit tests for api_sig: Intercom X-Hub-Signature and Customer.io X-CIO-Signature. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "api/api_sig.h"

static const char fox[] = "The quick brown fox jumps over the lazy dog";

/* The published HMAC-SHA1 example (key "key", the pangram). */
static void test_intercom_known_vector(void **state) {
    (void)state;
    assert_int_equal(api_sig_intercom_verify("key", "sha1=de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9",
                                             fox, strlen(fox)),
                     API_SIG_OK);
}

static void test_intercom_uppercase_hex_accepted(void **state) {
    (void)state;
    assert_int_equal(api_sig_intercom_verify("key", "sha1=DE7C9B85B8B78AA6BC8A7A36F70A90701C9DB4D9",
                                             fox, strlen(fox)),
                     API_SIG_OK);
}

static void test_intercom_body_vector(void **state) {
    (void)state;
    const char body[] = "{\"type\":\"notification_event\"}";
    assert_int_equal(api_sig_intercom_verify("my-secret",
                                             "sha1=ed34cabcaa672df6a4e3cbae4f49e06fa9033d5c", body,
                                             strlen(body)),
                     API_SIG_OK);
    /* Empty body still has a defined signature. */
    assert_int_equal(api_sig_intercom_verify("my-secret",
                                             "sha1=06ab8f5411002dd455cdd2d307f68147396b1ff1", "", 0),
                     API_SIG_OK);
}

static void test_intercom_mismatch(void **state) {
    (void)state;
    /* Right format, wrong secret / changed body / one digit off. */
    assert_int_equal(api_sig_intercom_verify("other", "sha1=de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9",
                                             fox, strlen(fox)),
                     API_SIG_MISMATCH);
    assert_int_equal(api_sig_intercom_verify("key", "sha1=de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9",
                                             fox, strlen(fox) - 1),
                     API_SIG_MISMATCH);
    assert_int_equal(api_sig_intercom_verify("key", "sha1=de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d8",
                                             fox, strlen(fox)),
                     API_SIG_MISMATCH);
}

static void test_intercom_missing(void **state) {
    (void)state;
    assert_int_equal(api_sig_intercom_verify("key", NULL, fox, strlen(fox)), API_SIG_MISSING);
    assert_int_equal(api_sig_intercom_verify("key", "", fox, strlen(fox)), API_SIG_MISSING);
}

static void test_intercom_malformed(void **state) {
    (void)state;
    /* A sha256= signature of the same body is a different scheme, not a match. */
    assert_int_equal(api_sig_intercom_verify(
                         "key",
                         "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
                         fox, strlen(fox)),
                     API_SIG_MALFORMED);
    assert_int_equal(api_sig_intercom_verify("key", "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9", fox,
                                             strlen(fox)),
                     API_SIG_MALFORMED);
    assert_int_equal(api_sig_intercom_verify("key", "sha1=de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d",
                                             fox, strlen(fox)),
                     API_SIG_MALFORMED);
    assert_int_equal(api_sig_intercom_verify("key", "sha1=de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9 ",
                                             fox, strlen(fox)),
                     API_SIG_MALFORMED);
    assert_int_equal(api_sig_intercom_verify("key", "sha1=zz7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9",
                                             fox, strlen(fox)),
                     API_SIG_MALFORMED);
    assert_int_equal(api_sig_intercom_verify("key", "SHA1=de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9",
                                             fox, strlen(fox)),
                     API_SIG_MALFORMED);
}

static void test_intercom_sign_round_trip(void **state) {
    (void)state;
    char sig[46];
    api_sig_intercom_sign("key", fox, strlen(fox), sig);
    assert_string_equal(sig, "sha1=de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9");
    assert_int_equal(api_sig_intercom_verify("key", sig, fox, strlen(fox)), API_SIG_OK);
}

static const char cio_body[] = "{\"event_id\":\"01E4C4CT6YDC7Y5M7FE1GWWPQJ\"}";
static const char cio_sig[] = "99513eefc505f0a75ac766910758b63a016782f558e22c3bb3d269febc114463";

static void test_cio_known_vector(void **state) {
    (void)state;
    assert_int_equal(api_sig_cio_verify("whsec", "1613063089", cio_sig, cio_body, strlen(cio_body)),
                     API_SIG_OK);
}

static void test_cio_timestamp_is_signed(void **state) {
    (void)state;
    assert_int_equal(api_sig_cio_verify("whsec", "1613063090", cio_sig, cio_body, strlen(cio_body)),
                     API_SIG_MISMATCH);
    assert_int_equal(api_sig_cio_verify("other", "1613063089", cio_sig, cio_body, strlen(cio_body)),
                     API_SIG_MISMATCH);
}

static void test_cio_missing_and_malformed(void **state) {
    (void)state;
    assert_int_equal(api_sig_cio_verify("whsec", NULL, cio_sig, cio_body, strlen(cio_body)),
                     API_SIG_MISSING);
    assert_int_equal(api_sig_cio_verify("whsec", "1613063089", NULL, cio_body, strlen(cio_body)),
                     API_SIG_MISSING);
    assert_int_equal(api_sig_cio_verify("whsec", "1613063089", "abc", cio_body, strlen(cio_body)),
                     API_SIG_MALFORMED);
    assert_int_equal(api_sig_cio_verify("whsec", "1613063089",
                                        "sha256=99513eefc505f0a75ac766910758b63a016782f558e22c3bb3d269febc114463",
                                        cio_body, strlen(cio_body)),
                     API_SIG_MALFORMED);
}

/* The per-thread keyed contexts give what one-shot HMAC() gives, whatever the order of
 * keys, digests and threads. */
/* Counts how api_sig's answers differ from what one-shot HMAC() says (no cmocka asserts:
 * this also runs on other threads). */
static int oneshot_disagreements(const char *key, const char *ts, const char *body) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[65], sig[46];
    size_t len = strlen(body);
    int bad = 0;
    HMAC(EVP_sha1(), key, (int)strlen(key), (const unsigned char *)body, len, md, &mdlen);
    memcpy(sig, "sha1=", 5);
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(sig + 5 + 2 * i, 3, "%02x", md[i]);
    bad += api_sig_intercom_verify(key, sig, body, len) != API_SIG_OK;
    sig[44] = sig[44] == '0' ? '1' : '0';
    bad += api_sig_intercom_verify(key, sig, body, len) != API_SIG_MISMATCH;

    size_t tslen = strlen(ts);
    char *msg = malloc(tslen + len + 5);
    if (msg == NULL)
        return bad + 1;
    int n = sprintf(msg, "v0:%s:%s", ts, body);
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, (size_t)n, md, &mdlen);
    free(msg);
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    bad += api_sig_cio_verify(key, ts, hex, body, len) != API_SIG_OK;
    bad += api_sig_cio_verify(key, "1", hex, body, len) != API_SIG_MISMATCH;
    return bad;
}

static const char *const mac_keys[] = {
    "key", "", "other-secret", "key",
    /* longer than SHA-256's block: hashed first */
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef-long",
    "key",
};

static int run_mac_mix(void) {
    static const char *const bodies[] = {"", "x", "The quick brown fox jumps over the lazy dog",
                                         "{\"type\":\"notification_event\"}"};
    int bad = 0;
    for (int round = 0; round < 3; round++)
        for (size_t k = 0; k < sizeof(mac_keys) / sizeof(mac_keys[0]); k++)
            for (size_t b = 0; b < sizeof(bodies) / sizeof(bodies[0]); b++)
                bad += oneshot_disagreements(mac_keys[k], "1613063089", bodies[b]);
    return bad;
}

static void test_mac_contexts_match_oneshot(void **state) {
    (void)state;
    assert_int_equal(run_mac_mix(), 0);
}

static void *mac_thread(void *arg) {
    *(int *)arg = run_mac_mix();
    return NULL;
}

/* Loop threads each get their own contexts, released when the thread ends. */
static void test_mac_contexts_per_thread(void **state) {
    (void)state;
    pthread_t t[4];
    int bad[4] = {0};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, mac_thread, &bad[i]), 0);
    assert_int_equal(run_mac_mix(), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(bad[i], 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intercom_known_vector),
        cmocka_unit_test(test_intercom_uppercase_hex_accepted),
        cmocka_unit_test(test_intercom_body_vector),
        cmocka_unit_test(test_intercom_mismatch),
        cmocka_unit_test(test_intercom_missing),
        cmocka_unit_test(test_intercom_malformed),
        cmocka_unit_test(test_intercom_sign_round_trip),
        cmocka_unit_test(test_cio_known_vector),
        cmocka_unit_test(test_cio_timestamp_is_signed),
        cmocka_unit_test(test_cio_missing_and_malformed),
        cmocka_unit_test(test_mac_contexts_match_oneshot),
        cmocka_unit_test(test_mac_contexts_per_thread),
    };
    return cmocka_run_group_tests_name("api_sig", tests, NULL, NULL);
}
