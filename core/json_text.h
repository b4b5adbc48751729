/* json_text.h - a JSON string of text that may not be UTF-8 (a file's
 * name, a URL's path, a line cut at a byte count): jansson refuses such a
 * string, and a value lost to that would drop a log line, an error or a
 * whole event, so its stray bytes become '?' instead. */
#ifndef TRAIND_CORE_JSON_TEXT_H
#define TRAIND_CORE_JSON_TEXT_H

#include <jansson.h>

/* s as a JSON string, ASCII and well-formed UTF-8 kept, any other byte
 * '?'; NULL s is "". NULL only when out of memory. */
json_t *json_text(const char *s);

#endif
