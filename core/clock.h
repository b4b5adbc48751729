/* clock.h - the two clocks traind reads: seconds on the monotonic clock,
 * for durations (epoch times, samples/s, ETAs), and the realtime clock, for
 * the deadlines pthread_cond_timedwait measures against and for the time of
 * day a metric point was logged.
 */
#ifndef TRAIND_CORE_CLOCK_H
#define TRAIND_CORE_CLOCK_H

#include <time.h>

/* Seconds since an arbitrary point (CLOCK_MONOTONIC): only differences mean anything. */
double clock_now_s(void);

/* *ts = the realtime clock `ms` milliseconds from now (ms < 0: now), for
 * pthread_cond_timedwait. */
void clock_deadline_in(struct timespec *ts, int ms);

/* Seconds since the Unix epoch (CLOCK_REALTIME) to the millisecond: when
 * something happened, as a person reads it (a metric point's wall_time). */
double clock_wall_s(void);

#endif
