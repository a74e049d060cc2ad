/* api_sig: webhook signature checks. See api_sig.h. */
#include "api/api_sig.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes exactly 2*n hex chars into out. Returns 0, or -1 on a non-hex char. */
static int unhex(const char *hex, unsigned char *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
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
    if (HMAC(EVP_sha1(), secret, (int)strlen(secret), body, len, got, &gotlen) == NULL ||
        gotlen != sizeof(want))
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

    /* One buffer and the one-shot HMAC(): OpenSSL 3 deprecates the HMAC_CTX calls. */
    size_t tslen = strlen(timestamp);
    size_t msglen = 3 + tslen + 1 + len;
    unsigned char *msg = malloc(msglen ? msglen : 1);
    if (msg == NULL)
        return API_SIG_MISMATCH;
    memcpy(msg, "v0:", 3);
    memcpy(msg + 3, timestamp, tslen);
    msg[3 + tslen] = ':';
    if (len)
        memcpy(msg + 4 + tslen, body, len);
    int ok = HMAC(EVP_sha256(), key, (int)strlen(key), msg, msglen, got, &gotlen) != NULL;
    free(msg);
    if (!ok || gotlen != sizeof(want))
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
