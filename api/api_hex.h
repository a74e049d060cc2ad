/* api_hex: hexadecimal digits, for signature headers (api_sig) and \u escapes (api_jskim). */
#ifndef API_HEX_H
#define API_HEX_H

/* The value of one hex digit (either case), or -1. */
static inline int api_hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
