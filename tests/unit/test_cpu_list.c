/* test_cpu_list.c - server/cpu_list: Linux CPU lists parsed as taskset -c
 * reads them, refused with the byte where they go wrong, and written back
 * in /proc's Cpus_allowed_list form. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/error.h"
#include "server/cpu_list.h"

static void assert_cpus(const char *text, const int *cpus, int n) {
    cpu_set_t set;
    cr_assert_eq(cpu_list_parse(text, &set), 0, "'%s': %s", text, error_get());
    cr_assert_eq(CPU_COUNT(&set), n, "'%s': %d CPUs", text, CPU_COUNT(&set));
    for (int i = 0; i < n; i++) cr_assert(CPU_ISSET(cpus[i], &set), "'%s': CPU %d", text, cpus[i]);
}

Test(cpu_list, parses_single_cpus_ranges_and_lists) {
    assert_cpus("0", (int[]){0}, 1);
    assert_cpus("7", (int[]){7}, 1);
    assert_cpus("2-2", (int[]){2}, 1);
    assert_cpus("0-3,8", (int[]){0, 1, 2, 3, 8}, 5);
    assert_cpus("5,1,5", (int[]){1, 5}, 2);
    assert_cpus("1023", (int[]){1023}, 1);
}

Test(cpu_list, refuses_with_the_byte_where_it_goes_wrong) {
    const struct {
        const char *text, *message;
    } bad[] = {
        {"", "byte 0: expected a CPU number"},
        {"x", "byte 0: expected a CPU number"},
        {"1,,2", "byte 2: expected a CPU number"},
        {"1,", "byte 2: expected a CPU number"},
        {"3-1", "byte 2: the range 3-1 runs backwards"},
        {"3-", "byte 2: expected a CPU number below 1024 after '-'"},
        {"1024", "byte 0: expected a CPU number below 1024"},
        {"99999999999999999999", "byte 0: expected a CPU number below 1024"},
        {"1 2", "byte 1: expected ',' or '-', got ' '"},
        {"-1", "byte 0: expected a CPU number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cpu_set_t set;
        cr_assert_eq(cpu_list_parse(bad[i].text, &set), -1, "'%s' accepted", bad[i].text);
        cr_assert(strstr(error_get(), bad[i].message), "'%s': %s", bad[i].text, error_get());
    }
}

Test(cpu_list, formats_as_proc_does_and_round_trips) {
    const char *lists[] = {"0", "0-3,8", "1,3,5", "0-1023", "2-3,7-9,1000"};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        cpu_set_t set;
        char out[64];
        cr_assert_eq(cpu_list_parse(lists[i], &set), 0, "%s", error_get());
        cpu_list_format(&set, out, sizeof out);
        cr_assert_str_eq(out, lists[i]);
    }
    cpu_set_t none;
    CPU_ZERO(&none);
    char out[8] = "junk";
    cpu_list_format(&none, out, sizeof out);
    cr_assert_str_eq(out, "");
}

Test(cpu_list, a_short_buffer_is_cut_not_overrun) {
    cpu_set_t set;
    cr_assert_eq(cpu_list_parse("1,3,5,7,9,11,13", &set), 0);
    char out[8];
    memset(out, 'Z', sizeof out);
    cpu_list_format(&set, out, 6);
    cr_assert(memchr(out, '\0', 6) != NULL, "not terminated");
    cr_assert_eq(out[6], 'Z');
    cr_assert_str_eq(out, "1,3,5");
    cpu_list_format(&set, out, 8); /* "1,3,5,7" fits; "1,3,5,7,9" does not */
    cr_assert_str_eq(out, "1,3,5,7");
}
