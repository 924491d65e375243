/*
 * sw_json.h - the event's JSON Lines form (DESIGN "The event contract").
 *
 * Field names and order follow the DESIGN table; absent values are left
 * out.  Strings are escaped per RFC 8259; bytes that are not valid UTF-8
 * become U+FFFD, so the output is always valid JSON whatever the log held.
 */
#ifndef SW_JSON_H
#define SW_JSON_H

#include "sw_buf.h"
#include "sw_event.h"

/* Appends one JSON object (no newline) for ev to b. */
void sw_json_event(struct sw_buf *b, const struct sw_event *ev);

/* Appends s as a quoted, escaped JSON string. */
void sw_json_string(struct sw_buf *b, const char *s, size_t n);

#endif
