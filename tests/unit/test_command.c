/* test_command.c - server/command.c: another program's exit status, its
 * stdout and stderr, a timeout, and a program that is not there. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/error.h"
#include "server/command.h"

Test(command, output_and_status) {
    char *argv[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    CommandResult r;
    cr_assert_eq(command_run(argv, 10000, &r), 0, "%s", error_get());
    cr_assert_eq(r.status, 3);
    cr_assert_str_eq(r.out, "out\n");
    cr_assert_str_eq(r.err, "err\n");
    cr_assert_eq(r.timed_out, 0);
    command_result_free(&r);
}

Test(command, output_is_capped) {
    char *argv[] = {"sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x", NULL};
    CommandResult r;
    cr_assert_eq(command_run(argv, 10000, &r), 0, "%s", error_get());
    cr_assert_eq(r.status, 0);
    cr_assert_eq(strlen(r.out), COMMAND_OUTPUT_MAX, "the rest is read and dropped");
    command_result_free(&r);
}

Test(command, killed_after_the_timeout) {
    char *argv[] = {"sh", "-c", "echo started; exec sleep 30", NULL};
    CommandResult r;
    cr_assert_eq(command_run(argv, 300, &r), 0, "%s", error_get());
    cr_assert_eq(r.timed_out, 1);
    cr_assert_eq(r.status, 128 + 9, "SIGKILL");
    cr_assert_str_eq(r.out, "started\n");
    command_result_free(&r);
}

Test(command, missing_program) {
    char *argv[] = {"traind-no-such-program", NULL};
    CommandResult r;
    cr_assert_eq(command_run(argv, 1000, &r), -1);
    cr_assert_str_eq(error_get(), "traind-no-such-program: No such file or directory");
}
