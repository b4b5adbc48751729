/* test_dataloader.c - core/data/dataloader: batch cutting, seeded shuffles,
 * drop_last, resuming mid-epoch, and the prefetch thread, which must give
 * the very same batches as the plain path and stop cleanly at any point
 * (leaks and races show up under ASan here, and under -fsanitize=thread
 * when built by hand). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/data/dataloader.h"
#include "core/error.h"
#include "tests/support/batches.h"
#include "tests/support/fixture.h"

/* n samples: inputs float32 [n, 2] with row i = (i, -i), labels i % 7. */
static Dataset *toy_dataset(int64_t n) {
    Tensor *x = tensor_empty(SHAPE(n, 2), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *y = tensor_empty(SHAPE(n), DTYPE_INT64, DEVICE_CPU_INIT);
    cr_assert(x && y);
    float *px = tensor_data(x);
    int64_t *py = tensor_data(y);
    for (int64_t i = 0; i < n; i++) {
        px[2 * i] = (float)i;
        px[2 * i + 1] = (float)-i;
        py[i] = i % 7;
    }
    Dataset *ds = dataset_from_tensors(x, y, "toy");
    cr_assert(ds != NULL, "%s", error_get());
    return ds;
}

/* n uint8 images [n, 4, 4], pixel j of image i = (i * 16 + j) % 256. */
static Dataset *toy_images(int64_t n) {
    Tensor *x = tensor_empty(SHAPE(n, 4, 4), DTYPE_UINT8, DEVICE_CPU_INIT);
    Tensor *y = tensor_empty(SHAPE(n), DTYPE_INT64, DEVICE_CPU_INIT);
    uint8_t *px = tensor_data(x);
    int64_t *py = tensor_data(y);
    for (int64_t i = 0; i < n * 16; i++) px[i] = (uint8_t)(i % 256);
    for (int64_t i = 0; i < n; i++) py[i] = i % 10;
    Dataset *ds = dataset_from_tensors(x, y, "images");
    cr_assert(ds != NULL, "%s", error_get());
    return ds;
}

static DataLoader *make_loader(const Dataset *ds, int64_t bs, bool shuffle, uint64_t seed,
                               bool drop_last, int prefetch, const TransformList *tl) {
    DataLoaderOptions o = {.batch_size = bs, .shuffle = shuffle, .seed = seed,
                           .drop_last = drop_last, .prefetch = prefetch};
    DataLoader *dl = dataloader_new(ds, &o, tl);
    cr_assert(dl != NULL, "%s", error_get());
    return dl;
}

/* Runs one epoch and writes the sample ids (column 0 of the toy inputs) in
 * the order seen; returns how many. Checks each batch's bookkeeping. */
static int64_t run_epoch(DataLoader *dl, int epoch, int64_t *ids) {
    cr_assert_eq(dataloader_begin_epoch(dl, epoch), 0, "%s", error_get());
    Batch b;
    int64_t seen = 0, k = 0;
    int rc;
    while ((rc = dataloader_next(dl, &b)) == 1) {
        cr_assert_eq(b.index, k++);
        cr_assert_eq(b.epoch, epoch);
        cr_assert_eq(b.inputs->shape[0], b.size);
        cr_assert_eq(b.targets->shape[0], b.size);
        const float *x = tensor_data(b.inputs);
        const int64_t *y = tensor_data(b.targets);
        for (int64_t i = 0; i < b.size; i++) {
            int64_t id = (int64_t)x[2 * i];
            cr_assert_eq(x[2 * i + 1], -x[2 * i], "row gathered whole");
            cr_assert_eq(y[i], id % 7, "target follows its input");
            ids[seen++] = id;
        }
        batch_release(&b);
    }
    cr_assert_eq(rc, 0, "%s", error_get());
    cr_assert_eq(k, dataloader_num_batches(dl));
    return seen;
}

Test(dataloader, sequential_batches) {
    Dataset *ds = toy_dataset(103);
    for (int prefetch = 0; prefetch <= 2; prefetch += 2) {
        DataLoader *dl = make_loader(ds, 32, false, 0, false, prefetch, NULL);
        cr_assert_eq(dataloader_num_batches(dl), 4);
        cr_assert_eq(dataloader_num_samples(dl), 103);
        int64_t ids[103];
        cr_assert_eq(run_epoch(dl, 0, ids), 103);
        for (int i = 0; i < 103; i++) cr_assert_eq(ids[i], i);
        /* the last partial batch holds 7 */
        cr_assert_eq(dataloader_begin_epoch_at(dl, 1, 3), 0);
        Batch b;
        cr_assert_eq(dataloader_next(dl, &b), 1);
        cr_assert_eq(b.size, 7);
        cr_assert_eq(b.index, 3);
        batch_release(&b);
        cr_assert_eq(dataloader_next(dl, &b), 0);
        cr_assert_null(b.inputs);
        cr_assert_eq(dataloader_next(dl, &b), 0);
        dataloader_free(dl);
    }
    dataset_free(ds);
}

Test(dataloader, drop_last) {
    Dataset *ds = toy_dataset(103);
    DataLoader *dl = make_loader(ds, 32, true, 5, true, 2, NULL);
    cr_assert_eq(dataloader_num_batches(dl), 3);
    cr_assert_eq(dataloader_num_samples(dl), 96);
    int64_t ids[103];
    cr_assert_eq(run_epoch(dl, 0, ids), 96);
    dataloader_free(dl);
    /* exactly divisible: nothing is dropped */
    dl = make_loader(ds, 103, false, 0, true, 0, NULL);
    cr_assert_eq(dataloader_num_batches(dl), 1);
    dataloader_free(dl);
    dl = make_loader(ds, 200, false, 0, true, 0, NULL);
    cr_assert_eq(dataloader_num_batches(dl), 0);
    cr_assert_eq(run_epoch(dl, 0, ids), 0);
    dataloader_free(dl);
    dataset_free(ds);
}

Test(dataloader, shuffle_is_a_permutation) {
    Dataset *ds = toy_dataset(1000);
    DataLoader *dl = make_loader(ds, 64, true, 1234, false, 3, NULL);
    int64_t *ids = malloc(1000 * sizeof *ids);
    int *count = calloc(1000, sizeof *count);
    cr_assert_eq(run_epoch(dl, 0, ids), 1000);
    for (int i = 0; i < 1000; i++) count[ids[i]]++;
    int in_place = 0;
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(count[i], 1, "sample %d seen %d times", i, count[i]);
        in_place += ids[i] == i;
    }
    cr_assert_lt(in_place, 20, "that is hardly shuffled");
    /* the order the loader reports is the order batches came in */
    const int64_t *order = dataloader_order(dl);
    for (int i = 0; i < 1000; i++) cr_assert_eq(order[i], ids[i]);
    free(count);
    free(ids);
    dataloader_free(dl);
    dataset_free(ds);
}

Test(dataloader, same_seed_same_orders_new_epoch_new_order) {
    Dataset *ds = toy_dataset(500);
    DataLoader *a = make_loader(ds, 50, true, 42, false, 0, NULL);
    DataLoader *b = make_loader(ds, 50, true, 42, false, 2, NULL);
    DataLoader *c = make_loader(ds, 50, true, 43, false, 0, NULL);
    int64_t ea[3][500], eb[500], ec[500];
    for (int e = 0; e < 3; e++) {
        cr_assert_eq(run_epoch(a, e, ea[e]), 500);
        cr_assert_eq(run_epoch(b, e, eb), 500);
        cr_assert_eq(run_epoch(c, e, ec), 500);
        cr_assert_eq(memcmp(ea[e], eb, sizeof eb), 0, "epoch %d: same seed, same order", e);
        cr_assert_neq(memcmp(ea[e], ec, sizeof ec), 0, "epoch %d: another seed, another order", e);
    }
    cr_assert_neq(memcmp(ea[0], ea[1], sizeof ea[0]), 0, "epochs 0 and 1 differ");
    cr_assert_neq(memcmp(ea[1], ea[2], sizeof ea[0]), 0, "epochs 1 and 2 differ");
    dataloader_free(a);
    dataloader_free(b);
    dataloader_free(c);
    dataset_free(ds);
}

/* Byte-identical batches with and without the prefetch thread, transforms
 * included, over several epochs. */
Test(dataloader, prefetch_gives_identical_batches) {
    Dataset *ds = toy_images(301);
    double mean = 0.1307, std = 0.3081;
    TransformList tl;
    cr_assert_eq(transform_list_init(&tl, (TransformConfig[]){{.type = "ToTensor"},
                                     {.type = "Normalize", .mean = &mean, .std = &std,
                                      .num_mean = 1, .num_std = 1}}, 2), 0);
    for (int depth = 1; depth <= 4; depth++) {
        DataLoader *plain = make_loader(ds, 16, true, 7, false, 0, &tl);
        DataLoader *pre = make_loader(ds, 16, true, 7, false, depth, &tl);
        cr_assert_eq(assert_same_batches(plain, pre, 3, DEVICE_CPU_INIT), 3 * 19);
        dataloader_free(pre);
        dataloader_free(plain);
    }
    transform_list_free(&tl);
    dataset_free(ds);
}

/* Batches delivered on a device: a stand-in GPU, the CPU's kernel table
 * registered as cuda:0 (test_gpu_memory.c runs the same on a real one). Set at
 * creation or later with dataloader_set_device, with and without the
 * prefetch thread, the batches are the CPU loader's, on cuda:0. */
Test(dataloader, batches_on_a_device) {
    backend_register_cuda(&cpu_backend, 1);
    const Device cuda0 = {DEVICE_CUDA, 0};
    Dataset *ds = toy_images(301);
    TransformList tl;
    cr_assert_eq(transform_list_init(&tl, (TransformConfig[]){{.type = "ToTensor"}}, 1), 0);
    for (int prefetch = 0; prefetch <= 2; prefetch += 2) {
        DataLoader *plain = make_loader(ds, 16, true, 7, false, 0, &tl);
        DataLoaderOptions o = {.batch_size = 16, .shuffle = true, .seed = 7,
                               .prefetch = prefetch, .device = cuda0};
        DataLoader *on = dataloader_new(ds, &o, &tl);
        cr_assert(on != NULL, "%s", error_get());
        cr_assert_eq(assert_same_batches(plain, on, 2, cuda0), 2 * 19);
        dataloader_free(on);
        dataloader_free(plain);

        /* moved after creation, mid-epoch: the epoch ends there (and its
         * shuffle was drawn: the plain loader draws one too) */
        plain = make_loader(ds, 16, true, 7, false, 0, &tl);
        DataLoader *moved = make_loader(ds, 16, true, 7, false, prefetch, &tl);
        Batch b;
        cr_assert_eq(dataloader_begin_epoch(plain, 0), 0);
        cr_assert_eq(dataloader_begin_epoch(moved, 0), 0);
        cr_assert_eq(dataloader_next(moved, &b), 1);
        cr_assert_eq(b.inputs->device.type, DEVICE_CPU);
        batch_release(&b);
        cr_assert_eq(dataloader_set_device(moved, cuda0), 0, "%s", error_get());
        cr_assert_eq(dataloader_next(moved, &b), 0, "set_device ends the epoch");
        cr_assert_eq(assert_same_batches(plain, moved, 2, cuda0), 2 * 19);
        dataloader_free(moved);
        dataloader_free(plain);
    }
    DataLoaderOptions bad = {.batch_size = 4, .device = {DEVICE_CUDA, 3}};
    cr_assert_null(dataloader_new(ds, &bad, NULL));
    cr_assert(strncmp(error_get(), "dataloader: ", 12) == 0 && strstr(error_get(), "cuda:3"),
              "%s", error_get());
    transform_list_free(&tl);
    dataset_free(ds);
}

/* Batches of 1 MiB and more are gathered by several OpenMP threads: every
 * row still lands whole in its place, in the epoch's order. */
Test(dataloader, large_batches_gathered_in_parallel) {
    enum { N = 700, F = 1024, BS = 300 }; /* 300 rows of 4 KiB: 1.2 MB a batch */
    Tensor *x = tensor_empty(SHAPE(N, F), DTYPE_FLOAT32, DEVICE_CPU_INIT);
    Tensor *y = tensor_empty(SHAPE(N), DTYPE_INT64, DEVICE_CPU_INIT);
    cr_assert(x && y);
    for (int64_t i = 0; i < N; i++) {
        for (int j = 0; j < F; j++) ((float *)tensor_data(x))[i * F + j] = (float)i + j * 1e-3f;
        ((int64_t *)tensor_data(y))[i] = i;
    }
    Dataset *ds = dataset_from_tensors(x, y, "wide");
    cr_assert(ds, "%s", error_get());
    DataLoader *dl = make_loader(ds, BS, true, 5, false, 2, NULL);
    cr_assert_eq(dataloader_begin_epoch(dl, 0), 0);
    const int64_t *order = dataloader_order(dl);
    Batch b;
    int64_t seen = 0;
    while (dataloader_next(dl, &b) == 1) {
        const float *bx = tensor_data(b.inputs);
        const int64_t *by = tensor_data(b.targets);
        for (int64_t i = 0; i < b.size; i++, seen++) {
            cr_assert_eq(by[i], order[seen]);
            for (int j = 0; j < F; j++)
                cr_assert_eq(bx[i * F + j], (float)order[seen] + j * 1e-3f, "row %lld col %d",
                             (long long)seen, j);
        }
        batch_release(&b);
    }
    cr_assert_eq(seen, N);
    dataloader_free(dl);
    dataset_free(ds);
}

/* A checkpoint taken mid-epoch resumes to the same batches, and the epochs
 * after it draw the same orders as the uninterrupted run. */
Test(dataloader, resume_mid_epoch) {
    Dataset *ds = toy_dataset(250);
    DataLoader *ref = make_loader(ds, 20, true, 99, false, 2, NULL);
    int64_t want[3][250];
    for (int e = 0; e < 3; e++) cr_assert_eq(run_epoch(ref, e, want[e]), 250);
    dataloader_free(ref);

    DataLoader *first = make_loader(ds, 20, true, 99, false, 2, NULL);
    int64_t ids[250];
    run_epoch(first, 0, ids);
    cr_assert_eq(dataloader_begin_epoch(first, 1), 0);
    Batch b;
    for (int k = 0; k < 5; k++) {
        cr_assert_eq(dataloader_next(first, &b), 1);
        batch_release(&b);
    }
    DataLoaderState st;
    dataloader_state(first, &st);
    cr_assert_eq(st.epoch, 1);
    cr_assert_eq(st.batch, 5);
    dataloader_free(first); /* stopped mid-epoch with batches in flight */

    DataLoader *second = make_loader(ds, 20, true, 12345 /* the state overrides it */, false, 3,
                                     NULL);
    cr_assert_eq(dataloader_restore(second, &st), 0, "%s", error_get());
    int64_t at = 5 * 20;
    while (dataloader_next(second, &b) == 1) {
        const float *x = tensor_data(b.inputs);
        for (int64_t i = 0; i < b.size; i++)
            cr_assert_eq((int64_t)x[2 * i], want[1][at++], "resumed epoch 1, sample %lld",
                         (long long)(at - 1));
        batch_release(&b);
    }
    cr_assert_eq(at, 250);
    cr_assert_eq(run_epoch(second, 2, ids), 250);
    cr_assert_eq(memcmp(ids, want[2], sizeof ids), 0, "epoch 2 after the resume");
    /* the state at the end of an epoch restores to "nothing left" */
    dataloader_state(second, &st);
    cr_assert_eq(st.batch, dataloader_num_batches(second));
    dataloader_free(second);
    dataset_free(ds);
}

/* Stopping at every point, over and over: no leaks, no hangs. */
Test(dataloader, early_stop_and_restart) {
    Dataset *ds = toy_images(97);
    TransformList tl;
    cr_assert_eq(transform_list_init(&tl, (TransformConfig[]){{.type = "ToTensor"},
                                     {.type = "Flatten"}}, 2), 0);
    DataLoader *dl = make_loader(ds, 8, true, 3, false, 2, &tl);
    Batch b;
    for (int round = 0; round < 40; round++) {
        cr_assert_eq(dataloader_begin_epoch(dl, round), 0);
        for (int k = 0; k < round % 14; k++) {
            int rc = dataloader_next(dl, &b);
            cr_assert_eq(rc, k < 13 ? 1 : 0);
            if (rc == 1) {
                cr_assert_eq(b.inputs->ndim, 2);
                cr_assert_eq(b.inputs->shape[1], 16);
            }
            batch_release(&b);
        }
        if (round % 3 == 0) {
            dataloader_end_epoch(dl);
            cr_assert_eq(dataloader_next(dl, &b), 0);
        }
    }
    dataloader_free(dl);
    /* freed right after starting, while the thread is busy */
    for (int i = 0; i < 10; i++) {
        dl = make_loader(ds, 8, true, (uint64_t)i, false, 4, &tl);
        cr_assert_eq(dataloader_begin_epoch(dl, 0), 0);
        dataloader_free(dl);
    }
    /* freed before any epoch */
    dataloader_free(make_loader(ds, 8, false, 0, false, 2, &tl));
    transform_list_free(&tl);
    dataset_free(ds);
}

Test(dataloader, errors) {
    Dataset *ds = toy_dataset(10);
    DataLoaderOptions o = {.batch_size = 0};
    cr_assert_null(dataloader_new(ds, &o, NULL));
    cr_assert_str_eq(error_get(), "dataloader: batch_size must be >= 1, not 0");
    o = (DataLoaderOptions){.batch_size = 4, .prefetch = 99};
    cr_assert_null(dataloader_new(ds, &o, NULL));
    cr_assert(strstr(error_get(), "prefetch must be 0..8"), "%s", error_get());
    DataLoader *dl = make_loader(ds, 4, false, 0, false, 2, NULL);
    cr_assert_eq(dataloader_begin_epoch_at(dl, 0, 4), -1);
    cr_assert_str_eq(error_get(), "dataloader: cannot start epoch 0 at batch 4 of 3");
    Batch b;
    cr_assert_eq(dataloader_next(dl, &b), 0, "no epoch begun");
    dataloader_free(dl);
    /* a transform that cannot apply fails the batch, through the thread too */
    TransformList tl;
    cr_assert_eq(transform_list_init(&tl, (TransformConfig[]){{.type = "ToTensor"}}, 1), 0);
    for (int prefetch = 0; prefetch <= 2; prefetch += 2) {
        dl = make_loader(ds, 4, false, 0, false, prefetch, &tl);
        cr_assert_eq(dataloader_begin_epoch(dl, 2), 0);
        cr_assert_eq(dataloader_next(dl, &b), -1);
        cr_assert_null(b.inputs);
        cr_assert_str_eq(error_get(), "batch 0 of epoch 2: transforms[0] ToTensor: expects a "
                                      "batch of uint8 images [B, H, W] or [B, C, H, W], got float32 [4, 2]");
        dataloader_free(dl);
    }
    transform_list_free(&tl);
    dataset_free(ds);
}

/* A producer whose samples 0 and 7 fail: 0's slice late (it sleeps),
 * 7's at once. */
static int failing_gather(const DatasetProducer *p, const int64_t *idx, int64_t n, void *inputs,
                          void *targets) {
    (void)p;
    for (int64_t i = 0; i < n; i++) {
        ((float *)inputs)[i] = (float)idx[i];
        ((int64_t *)targets)[i] = 0;
        if (idx[i] == 0) usleep(100 * 1000);
        if (idx[i] == 0 || idx[i] == 7) return error_set("sample %lld is bad", (long long)idx[i]);
    }
    return 0;
}

static void failing_destroy(DatasetProducer *p) { free(p); }

static const DatasetProducerOps failing_ops = {failing_gather, failing_destroy};

/* Two threads' slices of a batch failing: the error is the lowest
 * slice's, not the one that failed first. */
Test(dataloader, a_batch_fails_with_its_first_failure) {
    DatasetProducer *p = calloc(1, sizeof *p);
    cr_assert(p);
    p->ops = &failing_ops;
    atomic_init(&p->refs, 1);
    DatasetField in = {DTYPE_FLOAT32, 1, {1}}, out = {DTYPE_INT64, 0, {0}};
    Dataset *ds = dataset_lazy(p, 8, &in, &out, 1, "failing");
    cr_assert(ds, "%s", error_get());
    DataLoaderOptions o = {.batch_size = 8, .num_workers = 2};
    DataLoader *dl = dataloader_new(ds, &o, NULL);
    cr_assert(dl, "%s", error_get());
    Batch b;
    cr_assert_eq(dataloader_begin_epoch(dl, 0), 0);
    cr_assert_eq(dataloader_next(dl, &b), -1);
    cr_assert_str_eq(error_get(), "batch 0 of epoch 0: sample 0 is bad");
    dataloader_free(dl);
    dataset_free(ds);
}

/* The real test set through ToTensor + Normalize, as the seed script loads it. */
Test(dataloader, mnist_epoch) {
    char ip[512], lp[512];
    if (!shared_path("datasets/mnist/t10k-images-idx3-ubyte.gz", ip, sizeof ip))
        cr_skip_test("mnist: %s not found", ip);
    cr_assert(shared_path("datasets/mnist/t10k-labels-idx1-ubyte.gz", lp, sizeof lp) != NULL);
    Dataset *ds = dataset_load_idx(ip, lp);
    cr_assert(ds != NULL, "%s", error_get());
    double mean = 0.1307, std = 0.3081;
    TransformList tl;
    cr_assert_eq(transform_list_init(&tl, (TransformConfig[]){{.type = "ToTensor"},
                                     {.type = "Normalize", .mean = &mean, .std = &std,
                                      .num_mean = 1, .num_std = 1}}, 2), 0);
    DataLoader *dl = make_loader(ds, 64, true, 0, false, 2, &tl);
    transform_list_free(&tl); /* the loader keeps its own copy */
    cr_assert_eq(dataloader_num_batches(dl), 157);
    json_t *fx = fixture_load("mnist_stats");
    Tensor *counts = fixture_tensor(fixture_case(fx, "t10k"), "class_counts");
    cr_assert_eq(dataloader_begin_epoch(dl, 0), 0);
    Batch b;
    int64_t have[10] = {0}, samples = 0, last = 0;
    const float lo = (0.0f - 0.1307f) / 0.3081f, hi = (1.0f - 0.1307f) / 0.3081f;
    while (dataloader_next(dl, &b) == 1) {
        cr_assert_eq(b.inputs->ndim, 4);
        cr_assert(b.inputs->shape[1] == 1 && b.inputs->shape[2] == 28 && b.inputs->shape[3] == 28);
        const float *x = tensor_data(b.inputs);
        for (int64_t i = 0; i < tensor_numel(b.inputs); i++)
            cr_assert(x[i] >= lo && x[i] <= hi);
        const int64_t *y = tensor_data(b.targets);
        for (int64_t i = 0; i < b.size; i++) have[y[i]]++;
        samples += b.size;
        last = b.size;
        batch_release(&b);
    }
    cr_assert_eq(samples, 10000);
    cr_assert_eq(last, 10000 - 156 * 64);
    for (int c = 0; c < 10; c++) cr_assert_eq(have[c], (int64_t)tensor_get(counts, c));
    tensor_release(counts);
    json_decref(fx);
    dataloader_free(dl);
    dataset_free(ds);
}

/* Three ranks' shards (dataloader_set_shard) of shuffled batches of 6 over
 * 20 samples: rank r's j-th sample of batch k is row r + 3j of the
 * one-process batch k, so the shards together are that batch; the last
 * batch of 2 leaves rank 2 an empty Batch. A shard set mid-epoch goes on
 * from the batch it stood at. */
Test(dataloader, shards_interleave_as_distributed_sampler) {
    Dataset *ds = toy_dataset(20);
    DataLoader *one = make_loader(ds, 6, true, 5, false, 0, NULL);
    DataLoader *rank[3];
    for (int r = 0; r < 3; r++) {
        rank[r] = make_loader(ds, 6, true, 5, false, r == 1 ? 2 : 0, NULL);
        cr_assert_eq(dataloader_set_shard(rank[r], r, 3), 0, "%s", error_get());
        cr_assert_eq(dataloader_begin_epoch(rank[r], 1), 0, "%s", error_get());
    }
    cr_assert_eq(dataloader_begin_epoch(one, 1), 0, "%s", error_get());
    Batch whole, part;
    for (int64_t k = 0; dataloader_next(one, &whole) == 1; k++) {
        const float *wx = tensor_data(whole.inputs);
        for (int r = 0; r < 3; r++) {
            cr_assert_eq(dataloader_next(rank[r], &part), 1, "%s", error_get());
            cr_assert_eq(part.index, k);
            cr_assert_eq(part.rows.first, r);
            cr_assert_eq(part.rows.stride, 3);
            cr_assert_eq(part.rows.total, whole.size);
            cr_assert_eq(part.size, (whole.size - r + 2) / 3, "batch %lld rank %d", (long long)k, r);
            const float *px = part.size ? tensor_data(part.inputs) : NULL;
            for (int64_t j = 0; j < part.size; j++)
                cr_assert_eq(px[2 * j], wx[2 * (r + 3 * j)], "batch %lld rank %d row %lld",
                             (long long)k, r, (long long)j);
            if (part.size == 0) cr_assert(part.inputs == NULL && part.targets == NULL);
            batch_release(&part);
        }
        batch_release(&whole);
    }
    cr_assert_eq(dataloader_next(rank[2], &part), 0, "every shard ends with the epoch");
    /* mid-epoch: one process at batch 2 becomes rank 0 of 2 there (two
     * fresh loaders: an epoch's order depends on the epochs drawn before) */
    dataloader_free(one);
    one = make_loader(ds, 6, true, 5, false, 0, NULL);
    cr_assert_eq(dataloader_begin_epoch(one, 4), 0, "%s", error_get());
    DataLoader *later = make_loader(ds, 6, true, 5, false, 0, NULL);
    cr_assert_eq(dataloader_begin_epoch(later, 4), 0, "%s", error_get());
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(dataloader_next(later, &part), 1);
        batch_release(&part);
    }
    cr_assert_eq(dataloader_set_shard(later, 0, 2), 0, "%s", error_get());
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(dataloader_next(one, &whole), 1);
        if (i < 2) {
            batch_release(&whole);
            continue;
        }
        cr_assert_eq(dataloader_next(later, &part), 1, "%s", error_get());
        cr_assert_eq(part.index, 2);
        const float *wx = tensor_data(whole.inputs), *px = tensor_data(part.inputs);
        for (int64_t j = 0; j < part.size; j++) cr_assert_eq(px[2 * j], wx[4 * j]);
        batch_release(&whole), batch_release(&part);
    }
    cr_assert_eq(dataloader_set_shard(later, 2, 2), -1);
    cr_assert_str_eq(error_get(), "dataloader: rank 2 of a world of 2");
    for (int r = 0; r < 3; r++) dataloader_free(rank[r]);
    dataloader_free(one), dataloader_free(later);
    dataset_free(ds);
}
