/* serve.h - `traind serve`: the daemon. */
#ifndef TRAIND_SERVER_SERVE_H
#define TRAIND_SERVER_SERVE_H

/* argv holds the arguments after "serve". Runs until SIGINT or SIGTERM;
 * returns the exit status: 0 after a graceful stop, 1 when it could not
 * start (one line on stderr), 2 for bad usage. */
int cmd_serve(int argc, char **argv);

#endif
