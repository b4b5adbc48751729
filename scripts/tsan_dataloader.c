/* tsan_dataloader.c - the DataLoader's prefetch thread under ThreadSanitizer.
 *
 * Criterion cannot run under TSan (its shared arena conflicts with TSan's
 * memory layout), and the project's check is the ASan build, so this
 * stand-alone driver is run by hand: scripts/tsan-dataloader.sh. It repeats
 * the races worth looking for: prefetch vs plain batches compared byte for
 * byte, epochs stopped and restarted at every point, loaders freed while the
 * worker is busy, a worker-side error reaching the caller, and (given the
 * MNIST paths) two shuffled epochs of the real test set. */
#include "core/data/dataloader.h"
#include "core/error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "FAIL %s:%d %s (%s)\n", __FILE__, __LINE__, #c, error_get());          \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static Dataset *images(int64_t n) {
    Tensor *x = tensor_empty(SHAPE(n, 4, 4), DTYPE_UINT8, DEVICE_CPU_INIT);
    Tensor *y = tensor_empty(SHAPE(n), DTYPE_INT64, DEVICE_CPU_INIT);
    uint8_t *px = tensor_data(x);
    int64_t *py = tensor_data(y);
    for (int64_t i = 0; i < n * 16; i++)
        px[i] = (uint8_t)(i % 256);
    for (int64_t i = 0; i < n; i++)
        py[i] = i % 10;
    return dataset_from_tensors(x, y, "t");
}

int main(int argc, char **argv) {
    Dataset *ds = images(301);
    double m = 0.1307, s = 0.3081;
    TransformList tl;
    CHECK(transform_list_init(
              &tl,
              (TransformConfig[]){
                  {.type = "ToTensor"},
                  {.type = "Normalize", .mean = &m, .std = &s, .num_mean = 1, .num_std = 1},
                  {.type = "Flatten"}},
              3) == 0);
    long batches = 0;
    for (int depth = 1; depth <= 4; depth++) {
        DataLoader *a = dataloader_new(
            ds, &(DataLoaderOptions){.batch_size = 16, .shuffle = true, .seed = 7}, &tl);
        DataLoader *b = dataloader_new(
            ds,
            &(DataLoaderOptions){.batch_size = 16, .shuffle = true, .seed = 7, .prefetch = depth},
            &tl);
        CHECK(a && b);
        for (int e = 0; e < 5; e++) {
            CHECK(dataloader_begin_epoch(a, e) == 0 && dataloader_begin_epoch(b, e) == 0);
            Batch x, y;
            while (dataloader_next(a, &x) == 1) {
                CHECK(dataloader_next(b, &y) == 1);
                CHECK(memcmp(tensor_data(x.inputs), tensor_data(y.inputs),
                             (size_t)tensor_numel(x.inputs) * 4) == 0);
                batch_release(&x);
                batch_release(&y);
                batches++;
            }
        }
        dataloader_free(a);
        dataloader_free(b);
    }
    /* early stops and restarts */
    DataLoader *dl = dataloader_new(
        ds, &(DataLoaderOptions){.batch_size = 8, .shuffle = true, .seed = 3, .prefetch = 2}, &tl);
    for (int r = 0; r < 200; r++) {
        CHECK(dataloader_begin_epoch(dl, r) == 0);
        Batch x;
        for (int k = 0; k < r % 9; k++) {
            CHECK(dataloader_next(dl, &x) == 1);
            batch_release(&x);
        }
        if (r % 3 == 0)
            dataloader_end_epoch(dl);
        if (r % 5 == 0) {
            DataLoaderState st;
            dataloader_state(dl, &st);
            CHECK(dataloader_restore(dl, &st) == 0);
        }
    }
    dataloader_free(dl);
    for (int i = 0; i < 50; i++) {
        dl = dataloader_new(
            ds,
            &(DataLoaderOptions){
                .batch_size = 8, .shuffle = true, .seed = (uint64_t)i, .prefetch = 4},
            &tl);
        CHECK(dataloader_begin_epoch(dl, 0) == 0);
        dataloader_free(dl);
    }
    /* an error made on the worker thread reaches the caller */
    TransformList bad;
    CHECK(transform_list_init(
              &bad,
              (TransformConfig[]){
                  {.type = "Normalize", .mean = &m, .std = &s, .num_mean = 1, .num_std = 1}},
              1) == 0);
    dl = dataloader_new(ds, &(DataLoaderOptions){.batch_size = 8, .prefetch = 2}, &bad);
    CHECK(dataloader_begin_epoch(dl, 0) == 0);
    Batch x;
    CHECK(dataloader_next(dl, &x) == -1);
    printf("worker error: %s\n", error_get());
    dataloader_free(dl);
    transform_list_free(&bad);
    /* MNIST, if given */
    if (argc == 3) {
        Dataset *mn = dataset_load_idx(argv[1], argv[2]);
        CHECK(mn);
        dl = dataloader_new(
            mn, &(DataLoaderOptions){.batch_size = 64, .shuffle = true, .prefetch = 2}, &tl);
        for (int e = 0; e < 2; e++) {
            CHECK(dataloader_begin_epoch(dl, e) == 0);
            long n = 0;
            while (dataloader_next(dl, &x) == 1) {
                n += x.size;
                batch_release(&x);
            }
            CHECK(n == mn->n);
        }
        dataloader_free(dl);
        dataset_free(mn);
    }
    transform_list_free(&tl);
    dataset_free(ds);
    printf("ok: %ld compared batches\n", batches);
    return 0;
}
