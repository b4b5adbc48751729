/* json_limits.h - what a JSON request body may ask of the parser: how deep
 * its arrays and objects nest and how long its strings are.
 *
 * jansson parses up to 2,048 levels and strings as long as the body; a
 * body of a megabyte of '[' or one string of a megabyte costs the parser
 * (and every later copy) far more than any real request needs. The HTTP
 * layer scans a body with this before handing it to jansson, so these
 * limits hold for every route that takes JSON.
 */
#ifndef TRAIND_SERVER_JSON_LIMITS_H
#define TRAIND_SERVER_JSON_LIMITS_H

#include <stddef.h>

/* 0 when the len bytes of s nest at most max_depth arrays and objects and
 * hold no string (keys included) of more than max_string bytes as written
 * (escapes count as their bytes); otherwise -1 with error_set() naming the
 * line and column where the limit was passed. Says nothing of whether s is
 * JSON otherwise: the parser judges that. */
int json_limits_check(const char *s, size_t len, int max_depth, size_t max_string);

#endif
