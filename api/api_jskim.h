/* api_jskim: drops the parts of an Intercom notification the parser never reads, before
 * jansson builds a tree of it.
 *
 * A conversation or ticket notification is 2.5 to 4.5 kB, and about half of it is
 * `statistics`, `source`, `ticket_type`, `ticket_parts`... which api_intercom never looks
 * at; building jansson nodes for them was most of a webhook's CPU. api_jskim copies the
 * body without those members of `data.item`, checking each dropped value as strictly as
 * jansson would (JSON grammar, UTF-8, escapes, duplicate keys). Whenever it is unsure
 * (anything unusual in a dropped value, a malformed document, an escaped key) it declines,
 * and the caller parses the original body: errors and their positions are always
 * jansson's own, on the text the client sent. */
#ifndef API_JSKIM_H
#define API_JSKIM_H

#include <stddef.h>

/* Writes into `out` (room for `len` bytes: the result is never longer) the body without
 * the unread members of data.item, except those named in `keep` (configured profile
 * attributes, which api_intercom reads from a contact item). Returns the new length, or
 * -1 to say "parse the original instead". */
long api_jskim(const char *body, size_t len, char *out, const char *const *keep,
               size_t nkeep);

#endif
