/* batches.h - comparing two DataLoaders batch by batch: the same indices,
 * sizes, dtypes, shapes and bytes, epoch after epoch. The second loader's
 * batches may live on a device (they are read back to the host, and must
 * be on `device`). Fails the current Criterion test at the first
 * difference, naming the epoch and the batch.
 */
#ifndef TRAIND_TESTS_BATCHES_H
#define TRAIND_TESTS_BATCHES_H

#include "core/data/dataloader.h"

/* Runs `epochs` epochs (0, 1, ...) of both; returns the batches compared. */
int64_t assert_same_batches(DataLoader *want, DataLoader *got, int epochs, Device device);

#endif
