/* test_json_text.c - core/json_text: text that may not be UTF-8 as a JSON
 * string: UTF-8 kept whole (2-, 3- and 4-byte characters), any other byte
 * '?' (a Latin-1 byte, a character cut at a byte count, an overlong form,
 * a surrogate), never a value lost. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/json_text.h"

static void expect(const char *in, const char *want) {
    json_t *j = json_text(in);
    cr_assert(j, "no string for '%s'", in);
    cr_assert_str_eq(json_string_value(j), want);
    json_decref(j);
}

Test(json_text, utf8_kept_other_bytes_marked) {
    expect("plain ascii", "plain ascii");
    expect("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82");
    expect("caf\xe9.csv", "caf?.csv");                 /* Latin-1 */
    expect("\xc3\xa9\xc3", "\xc3\xa9?");                /* cut inside its last character */
    expect("a\xc0\xafz", "a??z");                       /* an overlong '/' */
    expect("a\xed\xa0\x80z", "a???z");                  /* a surrogate */
    expect(NULL, "");
}
