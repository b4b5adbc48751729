/* test_gpu_graph.c - CUDA graphs (gpu/graph.cu, core/train_graph.c): a
 * captured sequence of ops replayed on new inputs gives what the ops give
 * run one by one, bit for bit; a capture that reads a result back fails
 * cleanly and leaves the thread running kernels; the graph's memory is not
 * handed to anyone else while it lives; an optimizer's update captured
 * once reads each step's numbers; and the trainer's fixture jobs
 * with "cuda_graphs" give exactly the metrics of the same jobs without,
 * their steps captured (or, where a step cannot be, saying why).
 *
 * Every test skips with "no CUDA device: ..." where there is none.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/optim/optimizer.h"
#include "core/tensor.h"
#include "core/train.h"
#include "job/build.h"
#include "tests/support/need_gpu.h"
#include "tests/support/optim_one.h"

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

/* The process's first products, float64 on cuBLAS and float32 on
 * cuBLASLt, inside a capture: their handles and workspaces are made there
 * (their allocations in the relaxed capture mode, which a thread-local
 * capture would otherwise refuse and be spoilt by). Each test runs in a
 * process of its own. */
Test(gpu, graph_captures_the_first_products) {
    test_need_gpu();
    const Backend *be = backend_for(CUDA0);
    DType dts[] = {DTYPE_FLOAT64, DTYPE_FLOAT32};
    for (int d = 0; d < 2; d++) {
        double v[48];
        for (int i = 0; i < 48; i++) v[i] = sin(i * 1.3) * 2;
        Tensor *h = tensor_from_doubles(v, SHAPE(6, 8), dts[d]);
        Tensor *a = tensor_to_device(h, CUDA0), *at = a ? tensor_transpose(a, 0, 1) : NULL;
        cr_assert(at, "%s", error_get());
        cr_assert_eq(be->graph_capture_begin(CUDA0), 0, "%s", error_get());
        Tensor *y = tensor_matmul(a, at);
        void *graph = be->graph_capture_end(CUDA0);
        cr_assert(y && graph, "%s: %s", dtype_name(dts[d]), error_get());
        cr_assert_eq(be->graph_launch(graph), 0, "%s", error_get());
        Tensor *want = tensor_matmul(a, at);
        double got[36], wanted[36];
        cr_assert_eq(tensor_to_doubles(y, got, 36), 0, "%s", error_get());
        cr_assert_eq(tensor_to_doubles(want, wanted, 36), 0, "%s", error_get());
        cr_assert_eq(memcmp(got, wanted, sizeof got), 0, "%s: the replay's product differs",
                     dtype_name(dts[d]));
        be->graph_free(graph);
        tensor_release(y), tensor_release(want), tensor_release(at), tensor_release(a);
        tensor_release(h);
    }
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

/* Another job on the same GPU: a thread whose first Embedding sets up its
 * index check (a wait for the kernels that may still write its slot)
 * while this thread captures. CUDA refuses a wait for the whole device
 * while one of its streams captures; neither thread may fail. */
static char other_error[256];

static void *embed_on_another_thread(void *out) {
    double w[6] = {1, 2, 3, 4, 5, 6}, ix[2] = {2, 0};
    Tensor *wh = tensor_from_doubles(w, SHAPE(3, 2), DTYPE_FLOAT32);
    Tensor *ih = tensor_from_doubles(ix, SHAPE(2), DTYPE_INT64);
    Tensor *wg = wh ? tensor_to_device(wh, CUDA0) : NULL;
    Tensor *ig = ih ? tensor_to_device(ih, CUDA0) : NULL;
    Tensor *e = wg && ig ? tensor_embedding(wg, ig) : NULL;
    Tensor *back = e ? tensor_to_device(e, DEVICE_CPU_INIT) : NULL;
    int rc = back ? tensor_to_doubles(back, out, 4) : -1;
    if (rc != 0) snprintf(other_error, sizeof other_error, "%s", error_get());
    Tensor *all[] = {wh, ih, wg, ig, e, back};
    for (int i = 0; i < 6; i++) tensor_release(all[i]);
    return rc == 0 ? out : NULL;
}

Test(gpu, index_check_set_up_beside_a_capture) {
    Tensor *a;
    const Backend *be = begin_small_capture(&a);
    Tensor *s = ops(a);
    double got[4] = {0}, want[4] = {5, 6, 1, 2};
    pthread_t other;
    void *embedded = NULL;
    cr_assert_eq(pthread_create(&other, NULL, embed_on_another_thread, got), 0);
    cr_assert_eq(pthread_join(other, &embedded), 0);
    void *graph = be->graph_capture_end(CUDA0);
    cr_assert(embedded, "the other thread's Embedding: %s", other_error);
    for (int i = 0; i < 4; i++) cr_assert_eq(got[i], want[i], "element %d", i);
    cr_assert(graph, "this thread's capture: %s", error_get());
    cr_assert_eq(be->graph_launch(graph), 0, "%s", error_get());
    cr_assert_eq(tensor_item(s), SMALL_SUM, "%s", error_get());
    be->graph_free(graph);
    tensor_release(s), tensor_release(a);
}

/* ---- the optimizer's update ---- */

/* A queued copy's source may be reused at once; the copy lands after the
 * kernels queued before it; a capture refuses it (the graph would keep its
 * bytes). 5000 bytes: three of its launches. */
Test(gpu, queued_copy_lands_behind_earlier_kernels) {
    test_need_gpu();
    const Backend *be = backend_for(CUDA0);
    cr_assert(be->from_host_queued);
    enum { N = 1250 };
    float host[N];
    Tensor *t = tensor_empty(SHAPE(N), DTYPE_FLOAT32, CUDA0);
    /* 1 GiB of fills first (4 MiB on the simulated device, which runs
     * nothing before the host waits) */
    int64_t big_n = test_gpu_simulated() ? (int64_t)1 << 20 : (int64_t)1 << 28;
    Tensor *big = tensor_empty(SHAPE(big_n), DTYPE_FLOAT32, CUDA0);
    cr_assert(t && big, "%s", error_get());
    for (int i = 0; i < 8; i++) cr_assert_eq(tensor_fill_(big, i), 0, "%s", error_get());
    cr_assert_eq(tensor_fill_(t, -1), 0, "%s", error_get());
    for (int i = 0; i < N; i++) host[i] = (float)i;
    cr_assert_eq(be->from_host_queued(CUDA0, tensor_data(t), host, sizeof host), 0, "%s",
                 error_get());
    for (int i = 0; i < N; i++) host[i] = -2;
    Tensor *back = tensor_to_device(t, DEVICE_CPU_INIT);
    cr_assert(back, "%s", error_get());
    for (int i = 0; i < N; i++) cr_assert_eq(tensor_get(back, i), i, "element %d", i);
    cr_assert_eq(be->graph_capture_begin(CUDA0), 0, "%s", error_get());
    cr_assert_eq(be->from_host_queued(CUDA0, tensor_data(t), host, 8), -1);
    cr_assert_null(be->graph_capture_end(CUDA0), "a capture holding a queued copy");
    error_clear();
    tensor_release(back), tensor_release(t), tensor_release(big);
}

static void expect_same_bits(Tensor *x, Tensor *y, const char *what, int step) {
    Tensor *hx = tensor_to_device(x, DEVICE_CPU_INIT), *hy = tensor_to_device(y, DEVICE_CPU_INIT);
    cr_assert(hx && hy, "%s", error_get());
    size_t bytes = (size_t)tensor_numel(hx) * dtype_size(hx->dtype);
    cr_assert(memcmp(tensor_data(hx), tensor_data(hy), bytes) == 0,
              "%s: step %d: not the same bits", what, step);
    tensor_release(hx), tensor_release(hy);
}

/* Two optimizers over the same three parameters on the GPU, parameter 2
 * in the no-decay group (two runs): one stepped by optimizer_step, the
 * other by an update captured once (optimizer_step_apply) and replayed
 * after each step's optimizer_step_prepare. Parameters and every state
 * tensor the same, bit for bit, at each of 5 steps; with `moving_lr` the lr
 * changes at every step, else the numbers stay the same from step 2 on
 * and are not sent again. */
static void check_graph_update(Optimizer *(*make)(Tensor *const *, int, const void *),
                               const void *opts, bool moving_lr, const char *what) {
    const Backend *be = backend_for(CUDA0);
    double v[300], g[300];
    Tensor *a[3], *b[3];
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 300; j++) v[j] = sin(j + 100 * i);
        a[i] = on_gpu(v, 300), b[i] = on_gpu(v, 300);
    }
    Optimizer *eager = make(a, 3, opts), *graphed = make(b, 3, opts);
    cr_assert(eager && graphed, "%s: %s", what, error_get());
    cr_assert_eq(optimizer_set_no_decay_from(eager, 2), 0);
    cr_assert_eq(optimizer_set_no_decay_from(graphed, 2), 0);
    void *graph = NULL;
    for (int step = 1; step <= 5; step++) {
        eager->lr = graphed->lr = moving_lr ? 1e-2 / step : 1e-2;
        for (int i = 0; i < 3; i++) {
            for (int j = 0; j < 300; j++) g[j] = cos(j * step + i);
            tensor_release(a[i]->grad);
            a[i]->grad = on_gpu(g, 300);
            if (step == 1) b[i]->grad = on_gpu(g, 300);
            else cr_assert_eq(tensor_copy_(b[i]->grad, a[i]->grad), 0, "%s", error_get());
        }
        cr_assert_eq(optimizer_step(eager), 0, "%s: %s", what, error_get());
        if (step == 1) { /* state made op by op, then the update captured */
            cr_assert_eq(optimizer_step(graphed), 0, "%s: %s", what, error_get());
            cr_assert_eq(be->graph_capture_begin(CUDA0), 0, "%s", error_get());
            cr_assert_eq(optimizer_step_apply(graphed), 0, "%s: %s", what, error_get());
            graph = be->graph_capture_end(CUDA0);
            cr_assert(graph, "%s: %s", what, error_get());
        } else {
            cr_assert_eq(optimizer_step_prepare(graphed), 0, "%s: %s", what, error_get());
            cr_assert_eq(be->graph_launch(graph), 0, "%s", error_get());
        }
        for (int i = 0; i < 3; i++) {
            expect_same_bits(b[i], a[i], what, step);
            for (int j = 0; j < eager->type->n_slots; j++) {
                Tensor *sa = *optimizer_slot(eager, i, j), *sb = *optimizer_slot(graphed, i, j);
                cr_assert_eq(!sa, !sb, "%s: state %d of parameter %d", what, j, i);
                if (sa) expect_same_bits(sb, sa, what, step);
            }
        }
    }
    be->graph_free(graph);
    optimizer_zero_grad(eager), optimizer_zero_grad(graphed);
    optimizer_free(eager), optimizer_free(graphed);
    for (int i = 0; i < 3; i++) tensor_release(a[i]), tensor_release(b[i]);
}

Test(gpu, graph_update_replays_with_each_steps_numbers) {
    test_need_gpu();
    SgdOptions momentum = {.lr = 1e-2, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01};
    AdamOptions adam = adam_options_default(), adamw = adamw_options_default();
    adam.weight_decay = 0.05;
    adam.amsgrad = true;
    check_graph_update(make_sgd, &momentum, false, "SGD momentum, constant lr");
    check_graph_update(make_sgd, &momentum, true, "SGD momentum");
    check_graph_update(make_adam, &adam, true, "Adam amsgrad");
    check_graph_update(make_adamw, &adamw, true, "AdamW");
}

/* ---- random numbers at a replay's offset ---- */

/* The attention's dropout mask with its offset split between the argument
 * and device memory (a replay's base) is the mask at their sum, forward and
 * backward, bit for bit. */
Test(gpu, attention_mask_at_a_device_base) {
    test_need_gpu();
    Tensor *host = tensor_from_doubles((const double[]){50}, SHAPE(1), DTYPE_INT64);
    Tensor *base = host ? tensor_to_device(host, CUDA0) : NULL;
    cr_assert(base, "%s", error_get());
    double v[2 * 2 * 9 * 16];
    Tensor *in[3], *x[3];
    for (int i = 0; i < 3; i++) { /* q, k, v [2, 2, 9, 16], twice each */
        for (int j = 0; j < 2 * 2 * 9 * 16; j++) v[j] = sin(j * 0.37 + i);
        Tensor *h = tensor_from_doubles(v, SHAPE(2, 2, 9, 16), DTYPE_FLOAT32);
        in[i] = h ? tensor_to_device(h, CUDA0) : NULL;
        x[i] = h ? tensor_to_device(h, CUDA0) : NULL;
        tensor_release(h);
        cr_assert(in[i] && x[i] && tensor_set_requires_grad(in[i], true) == 0 &&
                      tensor_set_requires_grad(x[i], true) == 0,
                  "%s", error_get());
    }
    Tensor *want = tensor_causal_attention_dropout(in[0], in[1], in[2], 0.25, 3, 99, 0, NULL);
    Tensor *got = tensor_causal_attention_dropout(x[0], x[1], x[2], 0.25, 3, 49, 0,
                                                  tensor_data(base));
    Tensor *lw = want ? tensor_sum(want) : NULL, *lg = got ? tensor_sum(got) : NULL;
    cr_assert(lw && lg && tensor_backward(lw) == 0 && tensor_backward(lg) == 0, "%s",
              error_get());
    expect_same_bits(got, want, "forward", 0);
    for (int i = 0; i < 3; i++) expect_same_bits(x[i]->grad, in[i]->grad, "gradient", 0);
    tensor_release(want), tensor_release(got), tensor_release(lw), tensor_release(lg);
    for (int i = 0; i < 3; i++) tensor_release(in[i]), tensor_release(x[i]);
    tensor_release(host), tensor_release(base);
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

/* What a run changes in its job: Dropout's p (the layers', a GPT's) when
 * >= 0, with bn_cumulative BatchNorm's momentum None (the cumulative
 * average), accumulate_steps and epochs when > 0, and with `text` the
 * text file both its splits read. */
typedef struct {
    double dropout;
    bool bn_cumulative;
    int accumulate, epochs;
    const char *text;
} Edits;

/* The job spec at `path`, edited. */
static void run(const char *path, Edits e, bool graphs, Run *out) {
    memset(out, 0, sizeof *out);
    JobSpec *spec = job_spec_parse_file(path);
    cr_assert(spec, "%s: %s", path, error_get());
    if (spec->arch.kind == SPEC_ARCH_GPT && e.dropout >= 0) spec->arch.gpt.dropout = e.dropout;
    spec->cuda_graphs = graphs;
    if (e.accumulate > 0) spec->accumulate_steps = e.accumulate;
    if (e.epochs > 0) spec->epochs = e.epochs;
    SpecSource *sources[] = {&spec->train, &spec->val};
    for (int i = 0; i < 2 && e.text; i++) {
        free(sources[i]->path);
        cr_assert(sources[i]->path = strdup(e.text));
    }
    for (int i = 0; i < spec->num_layers; i++) {
        SpecLayer *l = &spec->layers[i];
        if (l->type == SPEC_LAYER_DROPOUT && e.dropout >= 0) l->p = e.dropout;
        if (l->type == SPEC_LAYER_BATCH_NORM1D && e.bn_cumulative) l->momentum = NAN;
    }
    JobBuild b;
    cr_assert_eq(job_build(&b, spec, NULL), 0, "%s: %s", path, error_get());
    cr_assert_eq(job_build_to_device(&b, CUDA0), 0, "%s: %s", path, error_get());
    Trainer t;
    train_init(&t);
    job_build_trainer(&b, &t, CUDA0);
    t.cb = (TrainCallbacks){.user = out, .metric = on_metric, .log = on_log};
    cr_assert_eq(train_run(&t), 0, "%s: %s", path, error_get());
    job_build_free(&b);
}

/* The same metrics, in the same order, bit for bit; the log's graph line. */
static void same_run_of(const char *path, Edits e, const char *expect_in_log) {
    Run *plain = malloc(sizeof *plain), *graph = malloc(sizeof *graph);
    cr_assert(plain && graph);
    run(path, e, false, plain);
    run(path, e, true, graph);
    cr_assert_eq(graph->n, plain->n, "%s: %d metrics with graphs, %d without", path, graph->n,
                 plain->n);
    for (int i = 0; i < plain->n; i++)
        cr_assert(strcmp(graph->name[i], plain->name[i]) == 0 &&
                      graph->step[i] == plain->step[i] && graph->value[i] == plain->value[i],
                  "%s: metric %d: %s step %lld %.17g with graphs, %s step %lld %.17g without",
                  path, i, graph->name[i], (long long)graph->step[i], graph->value[i],
                  plain->name[i], (long long)plain->step[i], plain->value[i]);
    cr_assert(strstr(graph->log, expect_in_log), "%s: no \"%s\" in its log:\n%s", path,
              expect_in_log, graph->log);
    fprintf(stderr, "gpu graphs %-32s %d metrics equal; %s\n", path, plain->n, expect_in_log);
    free(plain), free(graph);
}

/* The same for the fixture job `job` (tests/fixtures/jobs). */
static void same_run(const char *job, Edits e, const char *expect_in_log) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/jobs/%s.json", job);
    same_run_of(path, e, expect_in_log);
}

Test(gpu, graph_steps_give_the_same_metrics) {
    test_need_gpu();
    const char *captured[] = {"mlp_sgd_lambda",          "cnn_adam_steplr",
                              "layernorm_mlp_adamw",     "mlp_clip_grad_norm",
                              "mlp_label_smoothing_ignore3", "mlp_warmup_cosine_per_step",
                              "batchnorm_dropout_sgd_multistep"};
    const Edits none = {.dropout = -1};
    for (size_t i = 0; i < sizeof captured / sizeof *captured; i++)
        same_run(captured[i], none, "cuda graphs: step 2 captured");
    /* masks drawn in the graph, each replay at its own offset; BatchNorm's
     * cumulative average with its factor computed on the device */
    same_run("batchnorm_dropout_sgd_multistep", (Edits){.dropout = 0.3, .bn_cumulative = true},
             "cuda graphs: step 2 captured");
}

/* Steps of several batches (accumulate_steps), all captured in one graph:
 * the MNIST fixture's 10 batches of 32 (the last of 12) make steps of 3,
 * 3, 3 and 1 (the last op by op); in steps of 2 the last holds the short
 * batch and runs op by op. The BatchNorm job's 4 batches of 40 (the last
 * of 30) in steps of 2: the first epoch's second step holds the short
 * batch, so the second epoch's first step, step 3, is captured. Dropout's
 * masks move on over each batch of a step. */
Test(gpu, graph_steps_of_several_batches) {
    test_need_gpu();
    const Edits none = {.dropout = -1};
    same_run("accumulate_adamw_no_decay", none, "cuda graphs: step 2 captured");
    same_run("accumulate_adamw_no_decay", (Edits){.dropout = -1, .accumulate = 2},
             "cuda graphs: step 2 captured");
    same_run("batchnorm_dropout_sgd_multistep", (Edits){.dropout = 0.3, .accumulate = 2},
             "cuda graphs: step 3 captured");
    same_run("accumulate_adamw_no_decay", (Edits){.dropout = -1, .accumulate = 65},
             "cuda graphs: not used: a step of more than 64 batches");
}

/* test_models' character-level GPT (tests/e2e/gpt_chars.json) with
 * dropout: its Embedding checks indices on the device, its masks are drawn
 * at each replay's offset, so the whole step is captured; then in steps
 * of 4 batches. The simulated device reads the first 3 KB of its text,
 * not all 35 (3 batches an epoch: the second captured, replayed in the
 * second epoch), for 2 epochs of 3, and leaves steps of several batches
 * to graph_steps_of_several_batches. */
Test(gpu, graph_steps_of_a_gpt) {
    test_need_gpu();
    const char *job = "tests/e2e/gpt_chars.json";
    Edits e = {.dropout = 0.1};
    char text[] = "/tmp/traind-gpt-text-XXXXXX";
    if (test_gpu_simulated()) {
        char head[3072];
        FILE *gpl = fopen("/usr/share/common-licenses/GPL-3", "rb");
        cr_assert(gpl, "GPL-3: %s", strerror(errno));
        size_t n = fread(head, 1, sizeof head, gpl);
        fclose(gpl);
        int fd = mkstemp(text);
        cr_assert(fd >= 0, "%s: %s", text, strerror(errno));
        bool written = n == sizeof head && write(fd, head, n) == (ssize_t)n;
        close(fd);
        e.epochs = 2, e.text = text;
        if (written) same_run_of(job, e, "cuda graphs: step 2 captured");
        unlink(text); /* before the write's assertion, which would end the test */
        cr_assert(written, "%s: %s", text, strerror(errno));
        return;
    }
    same_run_of(job, e, "cuda graphs: step 2 captured");
    e.accumulate = 4;
    same_run_of(job, e, "cuda graphs: step 2 captured");
}
