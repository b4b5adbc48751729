/* train_loop.h - what core/train.c lends the other files of the training
 * loop (train_checkpoint.c); not for other callers.
 */
#ifndef TRAIND_CORE_TRAIN_LOOP_H
#define TRAIND_CORE_TRAIN_LOOP_H

#include "core/train.h"

/* A line to the trainer's log callback; rank 0 alone speaks for a
 * data-parallel job. Lines are cut at 511 bytes. */
void train_logf(const Trainer *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The scheduler's lr (and a OneCycleLR's momentum) into the optimizer for
 * the next step; 0 without a scheduler, -1 with an error. */
int train_apply_schedule(Trainer *t);

#endif
