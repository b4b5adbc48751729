/* test_transfer_watch.c - job/transfer_watch.c: a transfer under 1 KB/s
 * for a minute is stalled, one moving faster is not, and an upload sent
 * whole waits for the daemon's reply (its hashing of a large checkpoint)
 * for up to half an hour without being taken for a stall. */
#include <criterion/criterion.h>

#include "job/transfer_watch.h"

Test(transfer_watch, a_slow_transfer_stalls_a_fast_one_does_not) {
    TransferWatch w;
    transfer_watch_start(&w, 0);
    /* a download at 2 KB/s for ten minutes */
    for (int t = 1; t <= 600; t++)
        cr_assert(!transfer_watch_stalled(&w, t, 0, 2048LL * t, 0, 0), "t=%d", t);
    /* then 100 bytes a second: cut once a whole window has passed */
    int64_t at = 2048LL * 600;
    int cut = 0;
    for (int t = 601; t <= 800 && !cut; t++)
        if (transfer_watch_stalled(&w, t, 0, at + 100LL * (t - 600), 0, 0)) cut = t;
    cr_assert_eq(cut, 660, "cut after one window of 60 s");
}

Test(transfer_watch, an_upload_sent_whole_waits_for_its_reply) {
    TransferWatch w;
    transfer_watch_start(&w, 0);
    const int64_t body = 50LL << 20;
    cr_assert(!transfer_watch_stalled(&w, 10, 0, 0, body, body / 2));
    /* the body sent at t=20: the daemon hashes it for 20 minutes */
    for (int t = 20; t <= 20 + 1200; t += 5)
        cr_assert(!transfer_watch_stalled(&w, t, 0, 0, body, body), "t=%d", t);
    /* its reply begins: a window of its own, then the reply done */
    cr_assert(!transfer_watch_stalled(&w, 1221, 300, 100, body, body));
    cr_assert(!transfer_watch_stalled(&w, 1250, 300, 300, body, body));
    /* no reply for half an hour: given up */
    transfer_watch_start(&w, 0);
    cr_assert(!transfer_watch_stalled(&w, 1, 0, 0, body, body));
    cr_assert(!transfer_watch_stalled(&w, 1 + TRANSFER_WATCH_REPLY_WAIT_S, 0, 0, body, body));
    cr_assert(transfer_watch_stalled(&w, 2 + TRANSFER_WATCH_REPLY_WAIT_S, 0, 0, body, body));
}
