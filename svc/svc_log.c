/* svc_log: JSON-lines logging on stderr. See svc_log.h. */
#include "svc/svc_log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_min_level = SVC_LOG_INFO;

static const char *level_names[] = {"debug", "info", "warn", "error"};

void svc_log_set_level(enum svc_log_level level) {
    atomic_store(&log_min_level, (int)level);
}

int svc_log_parse_level(const char *name, enum svc_log_level *out) {
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum svc_log_level)i;
            return 0;
        }
    }
    return -1;
}

void svc_log(enum svc_log_level level, const char *msg, ...) {
    va_list ap;
    int skip = (int)level < atomic_load(&log_min_level);
    json_t *line = skip ? NULL : json_object();

    if (line != NULL) {
        struct timeval tv;
        struct tm tm;
        char ts[96];
        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000));
        json_object_set_new(line, "ts", json_string(ts));
        json_object_set_new(line, "level", json_string(level_names[level]));
        json_object_set_new(line, "msg", json_string(msg));
    }

    /* Consume the pairs even when skipping, so stolen values are always released. */
    va_start(ap, msg);
    for (;;) {
        const char *key = va_arg(ap, const char *);
        if (key == NULL)
            break;
        json_t *value = va_arg(ap, json_t *);
        if (line == NULL) {
            json_decref(value);
            continue;
        }
        json_object_set_new(line, key, value ? value : json_null());
    }
    va_end(ap);
    if (line == NULL)
        return;

    char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    if (text == NULL)
        return;
    size_t len = strlen(text);
    text[len] = '\n'; /* json_dumps NUL-terminates; reuse that byte for the newline */
    /* One write(2) per line keeps lines from different threads whole. */
    ssize_t w = write(STDERR_FILENO, text, len + 1);
    (void)w;
    free(text);
}
