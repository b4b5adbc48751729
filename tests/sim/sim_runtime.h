/* sim_runtime.h - what tests/sim's runtime (runtime.cpp) tells a test: the
 * first failure a kernel file recorded (gpu_record_msg), "" when none. */
#ifndef TRAIND_TESTS_SIM_SIM_RUNTIME_H
#define TRAIND_TESTS_SIM_SIM_RUNTIME_H

const char *sim_error(void);
void sim_clear_error(void);

#endif
