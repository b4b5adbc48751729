/* test_json_limits.c - server/json_limits.c: nesting depth and string
 * length of a JSON text, counted outside strings only, with the line and
 * column of the first place past a limit. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/error.h"
#include "server/json_limits.h"

static int check(const char *s, int depth, size_t string) {
    return json_limits_check(s, strlen(s), depth, string);
}

#define DEEPER "arrays and objects nest deeper than 2 levels"

Test(json_limits, depth) {
    cr_assert_eq(check("[[[]]]", 3, 100), 0);
    cr_assert_eq(check("[[[]]]", 2, 100), -1);
    cr_assert_str_eq(error_get(), DEEPER " at line 1, column 3");
    cr_assert_eq(check("{\"a\": [1, {\"b\": []}], \"c\": {}}", 4, 100), 0);
    cr_assert_eq(check("{\"a\": [1, {\"b\": []}]}", 2, 100), -1);
    cr_assert_str_eq(error_get(), DEEPER " at line 1, column 11");
    /* siblings do not add up: depth goes back down */
    cr_assert_eq(check("[[], [], [[]], []]", 3, 100), 0);
    /* lines and columns */
    cr_assert_eq(check("{\n  \"a\":\n   [[1]]}", 2, 100), -1);
    cr_assert_str_eq(error_get(), DEEPER " at line 3, column 5");
}

Test(json_limits, brackets_in_strings_do_not_count) {
    cr_assert_eq(check("{\"a\": \"[[[[{{{{\"}", 1, 100), 0);
    cr_assert_eq(check("[\"\\\"[[[\", \"]]\"]", 1, 100), 0); /* an escaped quote */
    cr_assert_eq(check("[\"\\\\\", [[]]]", 2, 100), -1); /* "\\" ends there */
}

Test(json_limits, string_length) {
    cr_assert_eq(check("{\"abcd\": \"efgh\"}", 8, 4), 0);
    cr_assert_eq(check("{\"abcd\": \"efghi\"}", 8, 4), -1);
    cr_assert_str_eq(error_get(), "a string at line 1, column 10 is longer than 4 bytes");
    cr_assert_eq(check("{\"abcde\": 1}", 8, 4), -1); /* keys too */
    cr_assert_str_eq(error_get(), "a string at line 1, column 2 is longer than 4 bytes");
    /* escapes count as written: \n is 2 bytes */
    cr_assert_eq(check("[\"a\\nb\"]", 8, 4), 0);
    cr_assert_eq(check("[\"a\\n\\nb\"]", 8, 4), -1);
    /* a string the body ends inside: as long as what is there */
    cr_assert_eq(check("[\"abc", 8, 4), 0);
    cr_assert_eq(check("[\"abcdef", 8, 4), -1);
}
