/* toy_dataset.h - a dataset "toy" for the scheduler's tests: 96 rows of 4
 * features and a label column "y" of 3 classes (the argmax of three fixed
 * linear scores), registered ready as an upload would be. */
#ifndef TRAIND_TESTS_TOY_DATASET_H
#define TRAIND_TESTS_TOY_DATASET_H

#include <stdint.h>

#include "storage/db.h"

/* The dataset's id; fails the current Criterion test when it cannot. */
int64_t toy_dataset_make(Db *db);

#endif
