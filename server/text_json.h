/* text_json.h - a jansson value written as compact JSON text: the bytes
 * json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) writes (objects in
 * insertion order, strings escaped as jansson escapes them, integers in
 * decimal) but for reals, which text_real writes as Python's repr does
 * (0.1, not jansson's 0.10000000000000001). Every JSON the daemon sends or
 * logs goes through here, so a number has one spelling everywhere.
 */
#ifndef TRAIND_SERVER_TEXT_JSON_H
#define TRAIND_SERVER_TEXT_JSON_H

#include <jansson.h>

#include "server/text.h"

/* v appended to t (oom set when memory ran out). */
void text_json(Text *t, const json_t *v);
/* v as a malloc'd NUL-terminated string, its length in *len (when len is
 * not NULL); NULL when v is NULL or memory ran out. */
char *text_json_dumps(const json_t *v, size_t *len);

#endif
