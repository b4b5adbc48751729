/* cmd_run.h - `traind run`: train one job file in the foreground. */
#ifndef TRAIND_SERVER_CMD_RUN_H
#define TRAIND_SERVER_CMD_RUN_H

/* argv holds the arguments after "run". Returns the exit status: 0, 1 when
 * the job failed (one line on stderr), 2 for bad usage. */
int cmd_run(int argc, char **argv);

#endif
