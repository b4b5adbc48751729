/* data_lock.h - one daemon per data dir.
 *
 * Two daemons on one data dir would each requeue the jobs the other is
 * running and train them a second time beside it, and each drop the
 * other's uploads in progress as "left unfinished". `traind serve` takes
 * an exclusive flock(2) of <data-dir>/traind.lock before it opens the
 * database and holds it for its life; the kernel lets go of it when the
 * process ends, however it ends (kill -9 included), so a stale lock file
 * never keeps a daemon from starting. The file holds the holder's pid,
 * for the message a second daemon prints.
 */
#ifndef TRAIND_SERVER_DATA_LOCK_H
#define TRAIND_SERVER_DATA_LOCK_H

/* Creates the data dir if needed and locks it: the lock's descriptor, or
 * -1 with an error ("data dir D is in use by pid P"). */
int data_lock_take(const char *data_dir);
/* Lets go of the lock (-1 is fine). */
void data_lock_release(int fd);

#endif
