/* test_gpu_graph.c - CUDA graphs (gpu/graph.cu, core/train_graph.c): a
 * captured sequence of ops replayed on new inputs gives what the ops give
 * run one by one, bit for bit; a capture that reads a result back fails
 * cleanly and leaves the thread running kernels; the graph's memory is not
 * handed to anyone else while it lives; and the trainer's fixture jobs
 * with "cuda_graphs" give exactly the metrics of the same jobs without,
 * their steps captured (or, where a step cannot be, saying why).
 *
 * Every test skips with "no CUDA device: ..." where there is none.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/tensor.h"
#include "core/train.h"
#include "job/build.h"
#include "tests/support/need_gpu.h"

static const Device CUDA0 = {DEVICE_CUDA, 0};

static Tensor *on_gpu(const double *v, int64_t n) {
    Tensor *h = tensor_from_doubles(v, SHAPE(n), DTYPE_FLOAT32);
    Tensor *g = h ? tensor_to_device(h, CUDA0) : NULL;
    tensor_release(h);
    cr_assert(g, "%s", error_get());
    return g;
}

/* sum(relu(a * 2 + 1)): a few kernels and their temporaries */
static Tensor *ops(Tensor *a) {
    Tensor *b = tensor_mul_scalar(a, 2), *c = tensor_add_scalar(b, 1), *d = tensor_relu(c);
    Tensor *s = tensor_sum(d);
    tensor_release(b), tensor_release(c), tensor_release(d);
    cr_assert(s, "%s", error_get());
    return s;
}

Test(gpu, graph_replays_captured_ops) {
    test_need_gpu();
    const Backend *be = backend_for(CUDA0);
    cr_assert(be && be->graph_capture_begin && be->graph_launch);
    double v[64], w[64];
    for (int i = 0; i < 64; i++) v[i] = sin(i) * 3, w[i] = cos(i * 0.7) * 2;
    Tensor *a = on_gpu(v, 64), *fresh = on_gpu(w, 64);
    cr_assert_eq(be->graph_capture_begin(CUDA0), 0, "%s", error_get());
    Tensor *s = ops(a);
    void *graph = be->graph_capture_end(CUDA0);
    cr_assert(graph, "%s", error_get());
    for (int round = 0; round < 2; round++) { /* v, then w copied into a */
        if (round == 1) cr_assert_eq(tensor_copy_(a, fresh), 0, "%s", error_get());
        cr_assert_eq(be->graph_launch(graph), 0, "%s", error_get());
        Tensor *want = ops(round ? fresh : a);
        cr_assert_eq(tensor_item(s), tensor_item(want), "round %d", round);
        tensor_release(want);
    }
    be->graph_free(graph);
    tensor_release(s), tensor_release(a), tensor_release(fresh);
}

/* a = [1, 2, 3, 4] on cuda:0, whose ops() give 3 + 5 + 7 + 9, and a
 * capture begun on this thread. */
#define SMALL_SUM (3 + 5 + 7 + 9)
static const Backend *begin_small_capture(Tensor **a) {
    test_need_gpu();
    const Backend *be = backend_for(CUDA0);
    double v[4] = {1, 2, 3, 4};
    *a = on_gpu(v, 4);
    cr_assert_eq(be->graph_capture_begin(CUDA0), 0, "%s", error_get());
    return be;
}

Test(gpu, graph_capture_fails_on_a_read_back) {
    Tensor *a;
    const Backend *be = begin_small_capture(&a);
    Tensor *s = ops(a);
    cr_assert(isnan(tensor_item(s)), "a capture's result cannot be read");
    cr_assert_null(be->graph_capture_end(CUDA0));
    fprintf(stderr, "gpu graph capture of a read: %s\n", error_get());
    error_clear();
    /* the thread runs kernels again, with no failure left over */
    Tensor *again = ops(a);
    cr_assert_eq(tensor_item(again), SMALL_SUM, "%s", error_get());
    tensor_release(again), tensor_release(s), tensor_release(a);
}

Test(gpu, graph_keeps_its_memory_while_it_lives) {
    Tensor *a;
    const Backend *be = begin_small_capture(&a);
    Tensor *big = tensor_empty(SHAPE(1 << 20), DTYPE_FLOAT32, CUDA0);
    cr_assert(big, "%s", error_get());
    void *p = tensor_data(big);
    cr_assert_eq(tensor_fill_(big, 1), 0);
    tensor_release(big); /* freed in the capture: the replay still writes it */
    Tensor *s = ops(a);
    void *graph = be->graph_capture_end(CUDA0);
    cr_assert(graph, "%s", error_get());
    Tensor *other[4];
    for (int i = 0; i < 4; i++) {
        other[i] = tensor_empty(SHAPE(1 << 20), DTYPE_FLOAT32, CUDA0);
        cr_assert(other[i] && tensor_data(other[i]) != p, "the graph's block handed out");
    }
    cr_assert_eq(be->graph_launch(graph), 0, "%s", error_get());
    cr_assert_eq(tensor_item(s), SMALL_SUM, "%s", error_get());
    be->graph_free(graph);
    for (int i = 0; i < 4; i++) tensor_release(other[i]);
    tensor_release(s), tensor_release(a);
}

/* ---- the trainer ---- */

typedef struct {
    int n;
    char name[1024][24];
    int64_t step[1024];
    double value[1024];
    char log[8192];
} Run;

static void on_metric(void *user, const char *name, int64_t step, int epoch, double value) {
    (void)epoch;
    Run *r = user;
    if (strstr(name, "_time_s") || strcmp(name, "samples_per_s") == 0 ||
        strcmp(name, "peak_memory_bytes") == 0 || r->n == 1024)
        return; /* the clock's and the allocator's */
    snprintf(r->name[r->n], sizeof r->name[0], "%s", name);
    r->step[r->n] = step;
    r->value[r->n++] = value;
}

static void on_log(void *user, const char *line) {
    Run *r = user;
    size_t used = strlen(r->log);
    snprintf(r->log + used, sizeof r->log - used, "%s\n", line);
}

static void run(const char *job, bool graphs, Run *out) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/jobs/%s.json", job);
    memset(out, 0, sizeof *out);
    JobSpec *spec = job_spec_parse_file(path);
    cr_assert(spec, "%s: %s", path, error_get());
    spec->cuda_graphs = graphs;
    JobBuild b;
    cr_assert_eq(job_build(&b, spec, NULL), 0, "%s: %s", path, error_get());
    cr_assert_eq(job_build_to_device(&b, CUDA0), 0, "%s: %s", path, error_get());
    Trainer t;
    train_init(&t);
    job_build_trainer(&b, &t, CUDA0);
    t.cb = (TrainCallbacks){.user = out, .metric = on_metric, .log = on_log};
    cr_assert_eq(train_run(&t), 0, "%s: %s", job, error_get());
    job_build_free(&b);
}

/* The same metrics, in the same order, bit for bit; the log's graph line. */
static void same_run(const char *job, const char *expect_in_log) {
    Run *plain = malloc(sizeof *plain), *graph = malloc(sizeof *graph);
    cr_assert(plain && graph);
    run(job, false, plain);
    run(job, true, graph);
    cr_assert_eq(graph->n, plain->n, "%s: %d metrics with graphs, %d without", job, graph->n,
                 plain->n);
    for (int i = 0; i < plain->n; i++)
        cr_assert(strcmp(graph->name[i], plain->name[i]) == 0 &&
                      graph->step[i] == plain->step[i] && graph->value[i] == plain->value[i],
                  "%s: metric %d: %s step %lld %.17g with graphs, %s step %lld %.17g without",
                  job, i, graph->name[i], (long long)graph->step[i], graph->value[i],
                  plain->name[i], (long long)plain->step[i], plain->value[i]);
    cr_assert(strstr(graph->log, expect_in_log), "%s: no \"%s\" in its log:\n%s", job,
              expect_in_log, graph->log);
    fprintf(stderr, "gpu graphs %-32s %d metrics equal; %s\n", job, plain->n, expect_in_log);
    free(plain), free(graph);
}

Test(gpu, graph_steps_give_the_same_metrics) {
    test_need_gpu();
    const char *captured[] = {"mlp_sgd_lambda",          "cnn_adam_steplr",
                              "layernorm_mlp_adamw",     "mlp_clip_grad_norm",
                              "mlp_label_smoothing_ignore3", "mlp_warmup_cosine_per_step",
                              "batchnorm_dropout_sgd_multistep"};
    for (size_t i = 0; i < sizeof captured / sizeof *captured; i++)
        same_run(captured[i], "cuda graphs: step 2 captured");
    same_run("accumulate_adamw_no_decay", "cuda graphs: not used: a step of several batches");
}
