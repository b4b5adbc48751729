/* transfer_watch.h - when a rank gives up on a file's transfer to or from
 * the daemon (a checkpoint uploaded, a dataset or checkpoint fetched).
 *
 * While bytes are to move, as libcurl's low-speed cut: under
 * TRANSFER_WATCH_MIN_RATE bytes a second over a window of
 * TRANSFER_WATCH_WINDOW_S seconds. Not while an upload's body is all sent
 * and the reply has not begun: the daemon then hashes and records what it
 * got (a checkpoint of tens of GB: minutes), and no byte moves; that wait
 * is cut only past TRANSFER_WATCH_REPLY_WAIT_S. libcurl's own cut counted
 * that wait as a stall, and cut every large checkpoint's upload after a
 * minute of the daemon's hashing, try after try.
 */
#ifndef TRAIND_JOB_TRANSFER_WATCH_H
#define TRAIND_JOB_TRANSFER_WATCH_H

#include <stdbool.h>
#include <stdint.h>

#define TRANSFER_WATCH_MIN_RATE 1024
#define TRANSFER_WATCH_WINDOW_S 60.0
#define TRANSFER_WATCH_REPLY_WAIT_S 1800.0

typedef struct {
    double window_at;      /* when the current window began */
    int64_t window_moved;  /* the bytes moved (both ways) as it began */
    double sent_at;        /* when the whole body was seen sent, 0 while not */
    bool waiting;          /* the last look: the body sent, no reply yet */
} TransferWatch;

void transfer_watch_start(TransferWatch *w, double now);

/* Whether to give up now, from libcurl's progress numbers (totals 0 while
 * unknown). */
bool transfer_watch_stalled(TransferWatch *w, double now, int64_t down_total, int64_t down_now,
                            int64_t up_total, int64_t up_now);

#endif
