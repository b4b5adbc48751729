/* transfer_watch.c - a transfer's stall, told from its reply's wait; see
 * transfer_watch.h. */
#include "job/transfer_watch.h"

void transfer_watch_start(TransferWatch *w, double now) {
    *w = (TransferWatch){.window_at = now};
}

bool transfer_watch_stalled(TransferWatch *w, double now, int64_t down_total, int64_t down_now,
                            int64_t up_total, int64_t up_now) {
    (void)down_total;
    int64_t moved = down_now + up_now;
    bool waiting = up_total > 0 && up_now >= up_total && down_now == 0;
    if (waiting) {
        if (!w->waiting) w->sent_at = now;
        w->waiting = true;
        return now - w->sent_at > TRANSFER_WATCH_REPLY_WAIT_S;
    }
    if (w->waiting) { /* the reply began: a window of its own */
        w->waiting = false;
        w->window_at = now;
        w->window_moved = moved;
        return false;
    }
    double span = now - w->window_at;
    if (span < TRANSFER_WATCH_WINDOW_S) return false;
    if ((double)(moved - w->window_moved) < TRANSFER_WATCH_MIN_RATE * span) return true;
    w->window_at = now;
    w->window_moved = moved;
    return false;
}
