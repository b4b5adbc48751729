/* test_clock.c - core/clock: the monotonic seconds move forward, and a
 * deadline lands `ms` after the realtime now with its nanoseconds in range. */
#include <criterion/criterion.h>
#include <time.h>

#include "core/clock.h"

Test(clock, monotonic_seconds_move_forward) {
    double a = clock_now_s();
    struct timespec pause = {0, 20 * 1000000L};
    nanosleep(&pause, NULL);
    double b = clock_now_s();
    cr_assert(b - a >= 0.019 && b - a < 5, "%g s", b - a);
}

Test(clock, deadlines_are_normalised) {
    const int ms[] = {0, 1, 999, 1000, 1999, 60500, -5};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        struct timespec before, d;
        clock_gettime(CLOCK_REALTIME, &before);
        clock_deadline_in(&d, ms[i]);
        cr_assert(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L, "%d ms: tv_nsec %ld", ms[i],
                  d.tv_nsec);
        double ahead = (double)(d.tv_sec - before.tv_sec) + (d.tv_nsec - before.tv_nsec) * 1e-9;
        double want = ms[i] > 0 ? ms[i] / 1000.0 : 0;
        cr_assert(ahead >= want && ahead < want + 1.0, "%d ms: %g s ahead", ms[i], ahead);
    }
}
