/* api_sig: webhook signature checks (pure; no I/O).
 *
 * Intercom signs the raw body: X-Hub-Signature: "sha1=" + hex(HMAC-SHA1(client_secret,
 * body)). Customer.io signs "v0:" + X-CIO-Timestamp + ":" + body with HMAC-SHA256 and
 * sends the hex digest in X-CIO-Signature. Both comparisons run in constant time over the
 * digest, so a forger learns nothing from response timing. */
#ifndef API_SIG_H
#define API_SIG_H

#include <stddef.h>

enum api_sig_result {
    API_SIG_OK = 0,
    API_SIG_MISSING = 1,   /* no header, or an empty one */
    API_SIG_MALFORMED = 2, /* wrong scheme (e.g. "sha256="), wrong length, non-hex */
    API_SIG_MISMATCH = 3,  /* well-formed but not ours */
};

/* Checks an Intercom X-Hub-Signature header value (NULL when absent) against `body`.
 * Hex digits are accepted in either case. */
enum api_sig_result api_sig_intercom_verify(const char *secret, const char *header,
                                            const void *body, size_t len);

/* Checks a Customer.io X-CIO-Signature against "v0:<timestamp>:<body>". `timestamp` is the
 * X-CIO-Timestamp header verbatim; NULL header or timestamp gives API_SIG_MISSING. */
enum api_sig_result api_sig_cio_verify(const char *key, const char *timestamp,
                                       const char *header, const void *body, size_t len);

/* Writes "sha1=<40 lowercase hex>" for `body` into out (46 bytes incl. NUL). Used by
 * tests and the demo tooling to sign deliveries. */
void api_sig_intercom_sign(const char *secret, const void *body, size_t len, char out[46]);

/* Short reason for logs and error messages. */
const char *api_sig_result_name(enum api_sig_result r);

#endif
