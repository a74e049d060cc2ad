/* api_jskim: see api_jskim.h.
 *
 * Why the result is always safe to parse in place of the body: members are copied
 * byte for byte, only whitespace between members and the dropped members go, and a
 * dropped value is only dropped after a check at least as strict as jansson's. So when
 * jansson accepts the copy, it would have accepted the body with the same values; when
 * it rejects the copy, the caller parses the body and reports jansson's own error. */
#include "api/api_jskim.h"

#include <string.h>

#include "api/api_hex.h"

#define MAX_DEPTH 16   /* deeper dropped values: decline rather than recurse */
#define MAX_KEYS 64    /* keys per dropped object checked for duplicates */

/* Members of data.item that api_intercom.c never reads. test_intercom.c parses every
 * fixture with and without skimming and requires the same result. */
static const char *const unread[] = {
    "statistics",  "source",  "ticket_type",         "ticket_parts", "first_contact_reply",
    "linked_objects", "teammates", "topics",          "sla_applied",  "ai_agent",
    "ticket_attributes", "conversation_message", "links", "assignee",
};
#define NUNREAD (sizeof(unread) / sizeof(unread[0]))

struct skim {
    const char *p, *end;
    char *out;
    size_t olen;
    const char *const *keep;
    size_t nkeep;
};

enum level { L_ROOT, L_DATA, L_ITEM };

static void ws(struct skim *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static void emit(struct skim *s, const char *from, size_t n) {
    memcpy(s->out + s->olen, from, n);
    s->olen += n;
}

/* Reads "\uXXXX" at p; -1 when malformed. */
static long read_u(const char *p, const char *end) {
    if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
        return -1;
    long v = 0;
    for (int i = 2; i < 6; i++) {
        int h = api_hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* A \u escape as jansson accepts it: no U+0000, surrogates only as a high-low pair. */
static int check_u(struct skim *s) {
    long v = read_u(s->p, s->end);
    if (v <= 0 || (v >= 0xDC00 && v <= 0xDFFF))
        return -1;
    s->p += 6;
    if (v >= 0xD800 && v <= 0xDBFF) {
        long lo = read_u(s->p, s->end);
        if (lo < 0xDC00 || lo > 0xDFFF)
            return -1;
        s->p += 6;
    }
    return 0;
}

/* One UTF-8 sequence as jansson accepts it (no overlongs, surrogates or values past
 * U+10FFFF). Returns its length, or -1. */
static int utf8_seq(const unsigned char *p, const unsigned char *end) {
    int n;
    unsigned long v;
    if (*p >= 0xC2 && *p <= 0xDF) {
        n = 2;
        v = *p & 0x1F;
    } else if (*p >= 0xE0 && *p <= 0xEF) {
        n = 3;
        v = *p & 0x0F;
    } else if (*p >= 0xF0 && *p <= 0xF4) {
        n = 4;
        v = *p & 0x07;
    } else {
        return -1;
    }
    if (end - p < n)
        return -1;
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return -1;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10FFFF ||
        (v >= 0xD800 && v <= 0xDFFF))
        return -1;
    return n;
}

/* Moves past the string at s->p. strict: check it as jansson would (declining escapes it
 * is unsure of); otherwise only find its end, jansson checks the copy. *escaped tells
 * whether it had a backslash. */
static int skip_string(struct skim *s, int strict, int *escaped) {
    *escaped = 0;
    s->p++;
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            s->p++;
            return 0;
        }
        if (c == '\\') {
            *escaped = 1;
            if (s->end - s->p < 2)
                return -1;
            char e = s->p[1];
            if (e == 'u' && strict) {
                if (check_u(s) < 0)
                    return -1;
                continue;
            }
            if (strict && e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' &&
                e != 'n' && e != 'r' && e != 't' && e != 'u')
                return -1;
            s->p += 2;
            continue;
        }
        if (strict && c < 0x20)
            return -1;
        if (strict && c >= 0x80) {
            int n = utf8_seq((const unsigned char *)s->p, (const unsigned char *)s->end);
            if (n < 0)
                return -1;
            s->p += n;
            continue;
        }
        s->p++;
    }
    return -1;
}

static int is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* A number jansson reads without trouble: integers that fit in 64 bits, reals without
 * an exponent (so they cannot overflow). Anything else: decline. */
static int skip_number(struct skim *s) {
    const char *p = s->p, *end = s->end;
    if (p < end && *p == '-')
        p++;
    const char *digits = p;
    if (p < end && *p == '0')
        p++;
    else if (p < end && *p >= '1' && *p <= '9')
        while (p < end && is_digit(*p))
            p++;
    else
        return -1;
    if (p - digits > 18)
        return -1;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p))
            return -1;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E'))
        return -1;
    s->p = p;
    return 0;
}

static int skip_literal(struct skim *s, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return -1;
    s->p += n;
    return 0;
}

/* After a member or an element: 1 past a ',' (another follows), 0 past `close`, -1 at
 * anything else. */
static int next_or_close(struct skim *s, char close) {
    ws(s);
    if (s->p >= s->end || (*s->p != ',' && *s->p != close))
        return -1;
    return *s->p++ == ',';
}

/* Checks the value at s->p as strictly as jansson with JSON_REJECT_DUPLICATES would. */
static int validate(struct skim *s, int depth) {
    ws(s);
    if (s->p >= s->end)
        return -1;
    char c = *s->p;
    if (c == '{' || c == '[') {
        int obj = c == '{';
        const char *keys[MAX_KEYS];
        size_t klen[MAX_KEYS], nk = 0;
        if (depth >= MAX_DEPTH)
            return -1;
        s->p++;
        ws(s);
        if (s->p < s->end && *s->p == (obj ? '}' : ']')) {
            s->p++;
            return 0;
        }
        for (;;) {
            if (obj) {
                ws(s);
                if (s->p >= s->end || *s->p != '"' || nk == MAX_KEYS)
                    return -1;
                const char *k = s->p + 1;
                int esc;
                if (skip_string(s, 1, &esc) < 0 || esc)
                    return -1; /* an escaped key could equal another once decoded */
                size_t kl = (size_t)(s->p - 1 - k);
                for (size_t i = 0; i < nk; i++) {
                    if (klen[i] == kl && memcmp(keys[i], k, kl) == 0)
                        return -1;
                }
                keys[nk] = k;
                klen[nk++] = kl;
                ws(s);
                if (s->p >= s->end || *s->p != ':')
                    return -1;
                s->p++;
            }
            if (validate(s, depth + 1) < 0)
                return -1;
            int more = next_or_close(s, obj ? '}' : ']');
            if (more <= 0)
                return more;
        }
    }
    if (c == '"') {
        int esc;
        return skip_string(s, 1, &esc);
    }
    if (c == '-' || is_digit(c))
        return skip_number(s);
    if (c == 't')
        return skip_literal(s, "true");
    if (c == 'f')
        return skip_literal(s, "false");
    if (c == 'n')
        return skip_literal(s, "null");
    return -1;
}

/* Finds the end of a kept value; jansson checks the copy. */
static int skip_loose(struct skim *s) {
    const char *start = s->p;
    int depth = 0, esc;
    while (s->p < s->end) {
        char c = *s->p;
        if (c == '"') {
            if (skip_string(s, 0, &esc) < 0)
                return -1;
            if (depth == 0)
                break; /* the value was this string */
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
            s->p++;
            continue;
        }
        if (c == '}' || c == ']') {
            if (depth == 0)
                break; /* the enclosing object ends: a scalar value ended before */
            s->p++;
            if (--depth == 0)
                break; /* the value was this container */
            continue;
        }
        if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'))
            break;
        s->p++;
    }
    return depth == 0 && s->p > start ? 0 : -1;
}

static int key_is(const char *name, size_t n, const char *word) {
    return strlen(word) == n && memcmp(name, word, n) == 0;
}

/* Index in unread[] of a member of data.item to drop, or -1 to keep it. */
static int unread_index(const struct skim *s, const char *name, size_t n) {
    for (size_t i = 0; i < s->nkeep; i++) {
        if (key_is(name, n, s->keep[i]))
            return -1;
    }
    for (size_t i = 0; i < NUNREAD; i++) {
        if (key_is(name, n, unread[i]))
            return (int)i;
    }
    return -1;
}

/* Copies the object at s->p, following data -> item, and dropping the unread members
 * of item. */
static int object(struct skim *s, enum level lv) {
    unsigned dropped = 0;
    int first = 1, esc;
    s->p++;
    emit(s, "{", 1);
    ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        emit(s, "}", 1);
        return 0;
    }
    for (;;) {
        ws(s);
        if (s->p >= s->end || *s->p != '"')
            return -1;
        const char *key = s->p;
        if (skip_string(s, 0, &esc) < 0 || esc)
            return -1; /* "st\u0061tistics" would dodge both the drop and the duplicate check */
        const char *name = key + 1;
        size_t nlen = (size_t)(s->p - 1 - name);
        size_t klen = (size_t)(s->p - key);
        ws(s);
        if (s->p >= s->end || *s->p != ':')
            return -1;
        s->p++;
        ws(s);
        int u = lv == L_ITEM ? unread_index(s, name, nlen) : -1;
        if (u >= 0) {
            if (dropped & (1u << u))
                return -1; /* a duplicate key: jansson rejects the body */
            dropped |= 1u << u;
            if (validate(s, 0) < 0)
                return -1;
        } else {
            if (!first)
                emit(s, ",", 1);
            first = 0;
            emit(s, key, klen);
            emit(s, ":", 1);
            int nested = s->p < s->end && *s->p == '{' &&
                         ((lv == L_ROOT && key_is(name, nlen, "data")) ||
                          (lv == L_DATA && key_is(name, nlen, "item")));
            if (nested) {
                if (object(s, lv == L_ROOT ? L_DATA : L_ITEM) < 0)
                    return -1;
            } else {
                const char *v = s->p;
                if (skip_loose(s) < 0)
                    return -1;
                emit(s, v, (size_t)(s->p - v));
            }
        }
        int more = next_or_close(s, '}');
        if (more < 0)
            return -1;
        if (more == 0) {
            emit(s, "}", 1);
            return 0;
        }
    }
}

long api_jskim(const char *body, size_t len, char *out, const char *const *keep,
               size_t nkeep) {
    struct skim s = {body, body + len, out, 0, keep, nkeep};
    ws(&s);
    if (s.p >= s.end || *s.p != '{' || object(&s, L_ROOT) < 0)
        return -1;
    ws(&s);
    if (s.p != s.end)
        return -1;
    return (long)s.olen;
}
