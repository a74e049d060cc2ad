/* svc_log: JSON-lines logging on stderr.
 *
 * Every line is one JSON object: {"ts":"2026-11-28T17:45:29.123Z","level":"info",
 * "msg":"redis_connected", <fields>...}. Fields are given as (key, json_t *) pairs
 * terminated by NULL; the json_t values are stolen (jansson's `_new` convention), so
 * callers write svc_log_info("x", "user", json_string(u), NULL) without leaks.
 * Never log secrets or whole request bodies. Thread-safe: one write(2) per line. */
#ifndef SVC_LOG_H
#define SVC_LOG_H

#include <jansson.h>

enum svc_log_level {
    SVC_LOG_DEBUG = 0,
    SVC_LOG_INFO = 1,
    SVC_LOG_WARN = 2,
    SVC_LOG_ERROR = 3,
};

/* Sets the lowest level written (default info). */
void svc_log_set_level(enum svc_log_level level);

/* Parses "debug"/"info"/"warn"/"error". Returns 0, or -1 for an unknown name. */
int svc_log_parse_level(const char *name, enum svc_log_level *out);

/* Writes one line. `msg` is a short snake_case event name. The variadic part is
 * (const char *key, json_t *value) pairs ending with NULL; values are stolen, and a NULL
 * value (e.g. json_string() on invalid UTF-8) is written as null. */
void svc_log(enum svc_log_level level, const char *msg, ...);

#define svc_log_debug(...) svc_log(SVC_LOG_DEBUG, __VA_ARGS__)
#define svc_log_info(...) svc_log(SVC_LOG_INFO, __VA_ARGS__)
#define svc_log_warn(...) svc_log(SVC_LOG_WARN, __VA_ARGS__)
#define svc_log_error(...) svc_log(SVC_LOG_ERROR, __VA_ARGS__)

#endif
