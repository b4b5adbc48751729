/* run_local.h - `traind run`: train one job file in the foreground. */
#ifndef TRAIND_JOB_RUN_LOCAL_H
#define TRAIND_JOB_RUN_LOCAL_H

/* argv holds the arguments after "run". Returns the exit status: 0, 1 when
 * the job failed (one line on stderr), 2 for bad usage. */
int job_run_local(int argc, char **argv);

#endif
