/* test_gpu_memory.c - the GPU's memory: the DataLoader's uploads beside
 * queued kernels, the caching allocator's reuse, pinned host buffers, an
 * out-of-memory that fails cleanly and leaves the device usable, and a
 * device that is not there.
 *
 * Every test skips with "no CUDA device: ..." where there is none.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/data/dataloader.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "tests/support/batches.h"
#include "tests/support/need_gpu.h"
#include "tests/support/parity.h"
#ifdef TRAIND_CUDA
#include "gpu/gpu.h"
#endif

/* ---- memory ---- */

/* The DataLoader on cuda: each batch is uploaded by the prefetch thread on
 * the copy stream (tensor_upload), beside the kernels the trainer queued.
 * The batches are the CPU loader's. And a batch released while kernels that
 * read it are still queued gives its block back to the allocator, which may
 * hand it to the next upload at once: the upload must wait for those
 * kernels, or their results change. */
Test(gpu, dataloader_uploads_beside_queued_kernels) {
    test_need_gpu();
    enum { B = 64, NB = 24, REPS = 8 };
    /* each matmul ~50 us on an H200; the simulated device's take 4096x less */
    const int64_t F = test_gpu_simulated() ? 64 : 4096;
    Rng r;
    rng_init(&r, 11);
    Tensor *x = parity_rand(&r, SHAPE(B * NB, F), DTYPE_FLOAT32, -1, 1);
    Tensor *y = tensor_empty(SHAPE(B * NB), DTYPE_INT64, DEVICE_CPU_INIT);
    cr_assert(y);
    for (int64_t i = 0; i < B * NB; i++) ((int64_t *)tensor_data(y))[i] = i % 10;
    Dataset *ds = dataset_from_tensors(x, y, "uploads");
    cr_assert(ds, "%s", error_get());
    DataLoaderOptions co = {.batch_size = B, .shuffle = true, .seed = 3};
    DataLoaderOptions go = co;
    go.prefetch = 2;
    go.device = CUDA0;
    DataLoader *cpu = dataloader_new(ds, &co, NULL), *gpu = dataloader_new(ds, &go, NULL);
    cr_assert(cpu && gpu, "%s", error_get());
    cr_assert_eq(assert_same_batches(cpu, gpu, 2, CUDA0), 2 * NB);

    Tensor *w = parity_rand(&r, SHAPE(F, F), DTYPE_FLOAT32, -1, 1), *wg = parity_to_gpu(w);
    Tensor *acc[NB];
    cr_assert_eq(dataloader_begin_epoch(gpu, 2), 0);
    for (int k = 0; k < NB; k++) {
        Batch b;
        cr_assert_eq(dataloader_next(gpu, &b), 1, "%s", error_get());
        acc[k] = NULL;
        for (int rep = 0; rep < REPS; rep++) { /* queued, not waited for */
            Tensor *p = tensor_matmul(b.inputs, wg);
            Tensor *sum = acc[k] ? tensor_add(acc[k], p) : tensor_retain(p);
            cr_assert(p && sum, "%s", error_get());
            tensor_release(p);
            tensor_release(acc[k]);
            acc[k] = sum;
        }
        batch_release(&b);
    }
    cr_assert_eq(dataloader_begin_epoch(cpu, 2), 0);
    for (int k = 0; k < NB; k++) {
        Batch a;
        cr_assert_eq(dataloader_next(cpu, &a), 1);
        Tensor *p = tensor_matmul(a.inputs, w);
        Tensor *want = tensor_mul_scalar(p, REPS);
        parity_check_close("upload beside queued matmuls", DTYPE_FLOAT32, acc[k], want, 1e-5);
        tensor_release(p);
        tensor_release(want);
        tensor_release(acc[k]);
        batch_release(&a);
    }
    tensor_release(w);
    tensor_release(wg);
    dataloader_free(gpu);
    dataloader_free(cpu);
    dataset_free(ds);
}


Test(gpu, allocator_reuses_freed_blocks) {
    test_need_gpu();
#ifdef TRAIND_CUDA
    Tensor *a = tensor_empty(SHAPE(1000, 1000), DTYPE_FLOAT32, CUDA0);
    cr_assert(a, "%s", error_get());
    void *first = tensor_data(a);
    size_t in_use0, cached0, peak0;
    uint64_t mallocs0;
    gpu_allocator_stats(0, &in_use0, &cached0, &peak0, &mallocs0);
    tensor_release(a);
    size_t in_use1, cached1;
    gpu_allocator_stats(0, &in_use1, &cached1, NULL, NULL);
    cr_assert_lt(in_use1, in_use0);
    cr_assert_gt(cached1, cached0);
    Tensor *b = tensor_empty(SHAPE(1000, 1000), DTYPE_FLOAT32, CUDA0);
    cr_assert(b, "%s", error_get());
    uint64_t mallocs1;
    gpu_allocator_stats(0, NULL, NULL, NULL, &mallocs1);
    cr_assert_eq(mallocs1, mallocs0, "a block of the same size was not reused");
    cr_assert_eq(tensor_data(b), first);
    /* a training-like loop: no cudaMalloc after the first iteration */
    for (int it = 0; it < 5; it++) {
        Tensor *x = tensor_full(SHAPE(256, 300), 1.0, DTYPE_FLOAT32, CUDA0);
        Tensor *y = tensor_mul_scalar(x, 2.0);
        Tensor *s = tensor_sum(y);
        cr_assert(s, "%s", error_get());
        cr_assert_float_eq(tensor_item(s), 2.0 * 256 * 300, 1e-3);
        if (it == 0) gpu_allocator_stats(0, NULL, NULL, NULL, &mallocs0);
        tensor_release(x);
        tensor_release(y);
        tensor_release(s);
    }
    gpu_allocator_stats(0, NULL, NULL, NULL, &mallocs1);
    cr_assert_eq(mallocs1, mallocs0, "cudaMalloc in the loop after warm-up");
    tensor_release(b);
    gpu_allocator_trim(0);
    gpu_allocator_stats(0, NULL, &cached1, NULL, NULL);
    cr_assert_eq(cached1, 0);
#endif
}

/* tensor_empty_pinned on cuda: page-locked host memory from gpu/pinned.cu,
 * uploaded exactly, and cached by size for the next batch. */
Test(gpu, pinned_host_buffers) {
    test_need_gpu();
#ifdef TRAIND_CUDA
    size_t in0, cached0;
    gpu_pinned_stats(&in0, &cached0);
    Tensor *t = tensor_empty_pinned(SHAPE(1024, 1024), DTYPE_FLOAT32, CUDA0);
    cr_assert(t, "%s", error_get());
    cr_assert(tensor_is_pinned(t) && t->device.type == DEVICE_CPU);
    size_t in1;
    gpu_pinned_stats(&in1, NULL);
    cr_assert_geq(in1 - in0, (size_t)4 << 20);
    float *p = tensor_data(t);
    for (int i = 0; i < 1024 * 1024; i++) p[i] = (float)i * 0.25f - 7.0f;
    Tensor *g = tensor_upload(t, CUDA0);
    cr_assert(g, "%s", error_get());
    parity_check_close("upload from pinned memory", DTYPE_FLOAT32, g, t, 0);
    void *first = tensor_data(t);
    tensor_release(t);
    size_t cached1;
    gpu_pinned_stats(NULL, &cached1);
    cr_assert_gt(cached1, cached0, "a freed buffer is kept");
    Tensor *again = tensor_empty_pinned(SHAPE(1024, 1024), DTYPE_FLOAT32, CUDA0);
    cr_assert(again && tensor_data(again) == first, "the kept buffer is taken back");
    tensor_release(again);
    tensor_release(g);
#endif
}

#ifdef TRAIND_CUDA
/* A batch's pinned buffer over the cache's 256 MiB, freed by another
 * thread (a DataLoader's) while this one captures a graph: not unpinned
 * then (cudaFreeHost waits for the device, which would end the capture),
 * but kept, and unpinned by the next free after the capture. */
static void *pinned_round_trip(void *failed) {
    void *p = gpu_pinned_alloc((size_t)257 << 20);
    gpu_pinned_free(p);
    *(bool *)failed = !p || gpu_last_error() != NULL;
    return NULL;
}
#endif

Test(gpu, pinned_free_beside_a_capture) {
    test_need_gpu();
#ifdef TRAIND_CUDA
    const Backend *be = backend_for(CUDA0);
    Tensor *a = tensor_zeros(SHAPE(4), DTYPE_FLOAT32, CUDA0);
    cr_assert(a, "%s", error_get());
    cr_assert_eq(be->graph_capture_begin(CUDA0), 0, "%s", error_get());
    Tensor *b = tensor_add_scalar(a, 1);
    pthread_t other;
    bool failed = true;
    cr_assert_eq(pthread_create(&other, NULL, pinned_round_trip, &failed), 0);
    cr_assert_eq(pthread_join(other, NULL), 0);
    void *graph = be->graph_capture_end(CUDA0);
    cr_assert(graph, "the capture beside the free: %s", error_get());
    cr_assert(!failed, "the other thread's pinned buffer");
    size_t cached;
    gpu_pinned_stats(NULL, &cached);
    cr_assert_geq(cached, (size_t)257 << 20, "kept while the capture ran");
    void *p = gpu_pinned_alloc(4096);
    gpu_pinned_free(p);
    gpu_pinned_stats(NULL, &cached);
    cr_assert_leq(cached, (size_t)256 << 20, "unpinned by the next free after it");
    be->graph_free(graph);
    tensor_release(a), tensor_release(b);
#endif
}

Test(gpu, out_of_memory_fails_cleanly) {
    test_need_gpu();
#ifdef TRAIND_CUDA
    char name[256];
    size_t total = 0, free_ = 0;
    cr_assert_eq(gpu_device_info(0, name, sizeof name, &total, &free_), 0, "%s", error_get());
    fprintf(stderr, "gpu device 0: %s, %zu MiB (%zu MiB free)\n", name, total >> 20, free_ >> 20);
    int64_t too_many = (int64_t)(total / sizeof(float)) * 2;
    Tensor *huge = tensor_empty(SHAPE(too_many), DTYPE_FLOAT32, CUDA0);
    cr_assert_null(huge);
    cr_assert(strstr(error_get(), "out of memory") && strstr(error_get(), "cuda:0"),
              "unclear error: %s", error_get());
    cr_assert_null(gpu_last_error(), "an OOM must not poison later ops: %s", gpu_last_error());
    /* the device still works */
    Tensor *a = tensor_full(SHAPE(3), 2.0, DTYPE_FLOAT32, CUDA0);
    Tensor *b = tensor_add_scalar(a, 1.0);
    Tensor *s = tensor_sum(b);
    cr_assert(s, "%s", error_get());
    cr_assert_float_eq(tensor_item(s), 9.0, 1e-6);
    Tensor *all[] = {a, b, s};
    parity_release_all(3, all);
#endif
}

Test(gpu, device_info_and_errors) {
    test_need_gpu();
    Device bad = {DEVICE_CUDA, 63};
    if (backend_cuda_device_count() < 64) {
        cr_assert_null(tensor_empty(SHAPE(2), DTYPE_FLOAT32, bad));
        cr_assert(strstr(error_get(), "cuda:63"), "%s", error_get());
    }
#ifdef TRAIND_CUDA
    cr_assert_eq(gpu_device_info(-1, NULL, 0, NULL, NULL), -1);
#endif
}
