/* api_sig: webhook signature checks. See api_sig.h. */
#include "api/api_sig.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#include "api/api_hex.h"

/* Decodes exactly 2*n hex chars into out. Returns 0, or -1 on a non-hex char. */
static int unhex(const char *hex, unsigned char *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int hi = api_hexval(hex[2 * i]), lo = api_hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

static void tohex(const unsigned char *in, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/*---------------------------------------------------------------------------
 * HMAC with a context kept per thread and digest
 *
 * One-shot HMAC() in OpenSSL 3 fetches the MAC and the digest by name, allocates and
 * keys a context, and frees it all on every call. Each thread keeps one keyed context
 * per digest instead; the next call with the same key only resets it (EVP_MAC_init
 * without a key reuses the key's precomputed inner and outer pads). A different key
 * re-keys it. If anything of this is unavailable, one-shot HMAC() answers as before.
 *--------------------------------------------------------------------------*/

enum mac_kind { MAC_SHA1 = 0, MAC_SHA256, MAC_KINDS };

static const char *const mac_digest[MAC_KINDS] = {"SHA1", "SHA256"};

struct mac_slot {
    EVP_MAC_CTX *ctx;
    unsigned char *key;              /* the key ctx holds (a copy), NULL before the first */
    size_t keylen;
};

static pthread_once_t mac_once = PTHREAD_ONCE_INIT;
static pthread_key_t mac_tls;
static int mac_tls_ok;
static EVP_MAC *mac_hmac;

static void mac_slots_free(void *p) {
    struct mac_slot *slots = p;
    for (int i = 0; i < MAC_KINDS; i++) {
        EVP_MAC_CTX_free(slots[i].ctx);
        OPENSSL_clear_free(slots[i].key, slots[i].keylen);
    }
    free(slots);
}

static void mac_init_once(void) {
    mac_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    mac_tls_ok = pthread_key_create(&mac_tls, mac_slots_free) == 0;
}

/* The thread's context for `kind`, keyed with `key` and ready for updates; NULL when it
 * cannot be had (the caller falls back to one-shot HMAC()). */
static EVP_MAC_CTX *mac_begin(enum mac_kind kind, const char *key, size_t keylen) {
    pthread_once(&mac_once, mac_init_once);
    if (mac_hmac == NULL || !mac_tls_ok)
        return NULL;
    struct mac_slot *slots = pthread_getspecific(mac_tls);
    if (slots == NULL) {
        slots = calloc(MAC_KINDS, sizeof(*slots));
        if (slots == NULL)
            return NULL;
        if (pthread_setspecific(mac_tls, slots) != 0) {
            free(slots);
            return NULL;
        }
    }
    struct mac_slot *s = &slots[kind];
    if (s->ctx != NULL && s->key != NULL && s->keylen == keylen &&
        memcmp(s->key, key, keylen) == 0) {
        if (EVP_MAC_init(s->ctx, NULL, 0, NULL))
            return s->ctx;
    }
    /* First use on this thread, another key, or a failed reset: key it afresh. */
    OPENSSL_clear_free(s->key, s->keylen);
    s->key = NULL;
    s->keylen = 0;
    if (s->ctx == NULL && (s->ctx = EVP_MAC_CTX_new(mac_hmac)) == NULL)
        return NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)(uintptr_t)mac_digest[kind],
                                         0),
        OSSL_PARAM_construct_end(),
    };
    static const unsigned char empty[1];
    if (!EVP_MAC_init(s->ctx, keylen ? (const unsigned char *)key : empty, keylen, params))
        return NULL;
    s->key = OPENSSL_malloc(keylen ? keylen : 1);
    if (s->key != NULL) {
        memcpy(s->key, key, keylen);
        s->keylen = keylen;
    }
    return s->ctx;
}

/* HMAC of the concatenated parts; returns the digest length, or 0 on failure. */
static unsigned int hmac_parts(enum mac_kind kind, const char *key, const void *const *parts,
                               const size_t *lens, int nparts, unsigned char *out) {
    size_t keylen = strlen(key);
    EVP_MAC_CTX *ctx = mac_begin(kind, key, keylen);
    if (ctx != NULL) {
        int ok = 1;
        for (int i = 0; i < nparts && ok; i++)
            ok = EVP_MAC_update(ctx, parts[i], lens[i]);
        size_t outlen = 0;
        if (ok && EVP_MAC_final(ctx, out, &outlen, EVP_MAX_MD_SIZE))
            return (unsigned int)outlen;
    }
    /* Fallback: the one-shot call over one buffer. */
    size_t total = 0;
    for (int i = 0; i < nparts; i++)
        total += lens[i];
    unsigned char *msg = malloc(total ? total : 1);
    if (msg == NULL)
        return 0;
    for (size_t i = 0, at = 0; i < (size_t)nparts; at += lens[i], i++)
        if (lens[i])
            memcpy(msg + at, parts[i], lens[i]);
    unsigned int outlen = 0;
    const EVP_MD *md = kind == MAC_SHA1 ? EVP_sha1() : EVP_sha256();
    int ok = HMAC(md, key, (int)keylen, msg, total, out, &outlen) != NULL;
    free(msg);
    return ok ? outlen : 0;
}

enum api_sig_result api_sig_intercom_verify(const char *secret, const char *header,
                                            const void *body, size_t len) {
    unsigned char want[20], got[EVP_MAX_MD_SIZE];
    unsigned int gotlen = 0;

    if (header == NULL || *header == '\0')
        return API_SIG_MISSING;
    if (strncmp(header, "sha1=", 5) != 0 || strlen(header) != 5 + 40)
        return API_SIG_MALFORMED;
    if (unhex(header + 5, want, sizeof(want)) < 0)
        return API_SIG_MALFORMED;
    const void *parts[] = {body};
    gotlen = hmac_parts(MAC_SHA1, secret, parts, &len, 1, got);
    if (gotlen != sizeof(want))
        return API_SIG_MISMATCH;
    return CRYPTO_memcmp(want, got, sizeof(want)) == 0 ? API_SIG_OK : API_SIG_MISMATCH;
}

enum api_sig_result api_sig_cio_verify(const char *key, const char *timestamp,
                                       const char *header, const void *body, size_t len) {
    unsigned char want[32], got[EVP_MAX_MD_SIZE];
    unsigned int gotlen = 0;

    if (header == NULL || *header == '\0' || timestamp == NULL || *timestamp == '\0')
        return API_SIG_MISSING;
    if (strlen(header) != 64 || unhex(header, want, sizeof(want)) < 0)
        return API_SIG_MALFORMED;

    /* "v0:" <timestamp> ":" <body>, fed in pieces. */
    const void *parts[] = {"v0:", timestamp, ":", body};
    size_t lens[] = {3, strlen(timestamp), 1, len};
    gotlen = hmac_parts(MAC_SHA256, key, parts, lens, 4, got);
    if (gotlen != sizeof(want))
        return API_SIG_MISMATCH;
    return CRYPTO_memcmp(want, got, sizeof(want)) == 0 ? API_SIG_OK : API_SIG_MISMATCH;
}

void api_sig_intercom_sign(const char *secret, const void *body, size_t len, char out[46]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    HMAC(EVP_sha1(), secret, (int)strlen(secret), body, len, md, &mdlen);
    memcpy(out, "sha1=", 5);
    tohex(md, 20, out + 5);
}

const char *api_sig_result_name(enum api_sig_result r) {
    switch (r) {
    case API_SIG_OK:
        return "ok";
    case API_SIG_MISSING:
        return "missing";
    case API_SIG_MALFORMED:
        return "malformed";
    case API_SIG_MISMATCH:
        return "mismatch";
    }
    return "unknown";
}
