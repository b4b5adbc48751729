/* cmd_user.h - `traind user`: the users of a data dir's database, from
 * the command line (the admin routes /v1/users do the same over HTTP).
 *
 *   traind user add NAME [--admin] [--data-dir DIR]     prints the new token
 *   traind user list [--data-dir DIR]                   a table
 *   traind user revoke NAME [--data-dir DIR]
 *   traind user rotate NAME [--data-dir DIR]            prints the new token
 *   traind user set-quota NAME [--running-jobs N] [--queued-jobs N] [--gpus N]
 *       [--dataset-bytes B | --dataset-gb G] [--checkpoint-bytes B | --checkpoint-gb G]
 *       [--data-dir DIR]            each value a number, `default` or `unlimited`
 *
 * DIR is ./var unless given, and must hold a database (DIR/traind.db):
 * `--create` makes one, so that a typo in DIR is an error, not a new empty
 * database with a token no daemon knows. The commands work beside a
 * running daemon (SQLite in WAL mode); a revoked or rotated token stops
 * working in it at once, its open streams included. Each change is
 * written to the audit trail with the actor "cli".
 */
#ifndef TRAIND_SERVER_CMD_USER_H
#define TRAIND_SERVER_CMD_USER_H

/* argv holds the arguments after "user". Returns the exit status: 0, 1
 * when the command failed (one line on stderr naming what), 2 for bad
 * usage. */
int cmd_user(int argc, char **argv);

#endif
