/* conv_dnnl.c - Conv2d's forward and both backward passes on oneDNN, the
 * library PyTorch's CPU convolutions run on: its JIT picks the best vector
 * ISA the processor has (AVX-512, AMX), whatever OpenBLAS was built for.
 *
 * A plan is made once per pass and shape and kept (a plan cache, as
 * PyTorch's ideep keeps its primitives): the primitive, with every layout
 * left to oneDNN ("any", so nChw16c and blocked weights on AVX-512), and
 * the reorders between our plain NCHW / OIHW tensors and those layouts.
 * A call reorders its inputs in, runs the primitive and reorders its
 * output back, into scratch from the host allocator's cache. Plans never
 * change once made, and each call brings its own scratchpad and stream,
 * so jobs on several threads share them.
 *
 * float32 only: other dtypes (the float64 gradient checks) return 1 and
 * take ops/conv2d.c's im2col + GEMM, as does every call while
 * cpu_conv_library(false) (tests of that path).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "core/cpu/cpu.h"
#include "core/error.h"

typedef enum { CONV_FORWARD, CONV_BACKWARD_DATA, CONV_BACKWARD_WEIGHTS } ConvPass;

typedef struct {
    ConvPass pass;
    Window2d w;
    int64_t out_channels;
    int groups;
    bool bias;
} ConvKey;

/* One tensor argument: its plain layout, the primitive's, and the reorder
 * from one to the other (in the direction the data flows; NULL when the
 * two are the same layout). */
typedef struct {
    int arg;    /* DNNL_ARG_SRC, ... */
    bool output;
    dnnl_memory_desc_t plain, inner;
    dnnl_primitive_t reorder;
} ConvArg;

typedef struct ConvPlan {
    ConvKey key;
    dnnl_primitive_t primitive;
    ConvArg args[3];
    dnnl_memory_desc_t bias, scratch;
    const char *impl; /* oneDNN's name for the kernel it chose */
    struct ConvPlan *next;
} ConvPlan;

static pthread_mutex_t plans_mu = PTHREAD_MUTEX_INITIALIZER;
static ConvPlan *plans;
static dnnl_engine_t engine;
static atomic_bool library_on = true;
static char chosen_impl[64];

void cpu_conv_library(bool on) {
    atomic_store(&library_on, on);
}

const char *cpu_conv_library_impl(void) {
    return chosen_impl[0] ? chosen_impl : NULL;
}

static int dnnl_failed(dnnl_status_t st, const char *what) {
    return error_set("conv2d: oneDNN %s failed (status %d)", what, (int)st);
}

/* ---- making a plan ---- */

/* dims copied into a full dnnl_dims_t: oneDNN's prototypes take whole
 * arrays, which gcc checks. */
static void desc_plain(dnnl_memory_desc_t *md, int ndims, const int64_t *dims_in, bool any) {
    dnnl_dims_t dims = {0};
    memcpy(dims, dims_in, (size_t)ndims * sizeof *dims);
    dnnl_format_tag_t tag = any ? dnnl_format_tag_any : ndims == 5 ? dnnl_goihw
                                                  : ndims == 4 ? dnnl_nchw
                                                               : dnnl_a;
    dnnl_memory_desc_init_by_tag(md, ndims, dims, dnnl_f32, tag);
}

/* Our weight [O, C/g, kh, kw] is oneDNN's goihw [g, O/g, C/g, kh, kw]. */
static int weight_dims(const ConvKey *k, int64_t *dims) {
    int64_t O = k->out_channels, C = k->w.channels, g = k->groups;
    if (g == 1) {
        memcpy(dims, (int64_t[]){O, C, k->w.kernel_h, k->w.kernel_w}, 4 * sizeof *dims);
        return 4;
    }
    memcpy(dims, (int64_t[]){g, O / g, C / g, k->w.kernel_h, k->w.kernel_w}, 5 * sizeof *dims);
    return 5;
}

/* The three descriptors with layouts left to oneDNN (any) or plain. */
static void conv_descs(const ConvKey *k, bool any, dnnl_memory_desc_t *src,
                       dnnl_memory_desc_t *weights, dnnl_memory_desc_t *dst) {
    const Window2d *w = &k->w;
    int64_t wd[5];
    int wn = weight_dims(k, wd);
    desc_plain(src, 4, (int64_t[]){w->batch, w->channels, w->height, w->width}, any);
    desc_plain(weights, wn, wd, any);
    desc_plain(dst, 4, (int64_t[]){w->batch, k->out_channels, w->out_h, w->out_w}, any);
}

/* Strides, dilations (oneDNN counts the gaps: torch's minus one) and the
 * padding. The right padding makes oneDNN's output size formula give
 * out_h exactly; where the window's last step stops short of the input's
 * end it would be negative, and the smallest such pad >= 0 gives the
 * same out_h (floor division) and reads nothing more. */
static void conv_geometry(const Window2d *w, dnnl_dims_t strides, dnnl_dims_t dilates,
                          dnnl_dims_t pad_l, dnnl_dims_t pad_r) {
    strides[0] = w->stride_h, strides[1] = w->stride_w;
    dilates[0] = w->dilation_h - 1, dilates[1] = w->dilation_w - 1;
    pad_l[0] = w->pad_h, pad_l[1] = w->pad_w;
    int64_t span_h = (w->kernel_h - 1) * w->dilation_h + 1;
    int64_t span_w = (w->kernel_w - 1) * w->dilation_w + 1;
    pad_r[0] = (w->out_h - 1) * w->stride_h + span_h - w->height - w->pad_h;
    pad_r[1] = (w->out_w - 1) * w->stride_w + span_w - w->width - w->pad_w;
    for (int i = 0; i < 2; i++)
        if (pad_r[i] < 0) pad_r[i] = 0;
}

static int forward_desc(const ConvKey *k, dnnl_convolution_desc_t *d) {
    dnnl_memory_desc_t src, weights, dst, bias;
    conv_descs(k, true, &src, &weights, &dst);
    desc_plain(&bias, 1, &k->out_channels, false);
    dnnl_dims_t s, dl, pl, pr;
    conv_geometry(&k->w, s, dl, pl, pr);
    dnnl_status_t st = dnnl_dilated_convolution_forward_desc_init(
        d, dnnl_forward_training, dnnl_convolution_direct, &src, &weights,
        k->bias ? &bias : NULL, &dst, s, dl, pl, pr);
    return st == dnnl_success ? 0 : dnnl_failed(st, "forward descriptor");
}

static int pass_desc(const ConvKey *k, dnnl_convolution_desc_t *d) {
    if (k->pass == CONV_FORWARD) return forward_desc(k, d);
    dnnl_memory_desc_t src, weights, dst, bias;
    conv_descs(k, true, &src, &weights, &dst);
    desc_plain(&bias, 1, &k->out_channels, false);
    dnnl_dims_t s, dl, pl, pr;
    conv_geometry(&k->w, s, dl, pl, pr);
    dnnl_status_t st =
        k->pass == CONV_BACKWARD_DATA
            ? dnnl_dilated_convolution_backward_data_desc_init(d, dnnl_convolution_direct, &src,
                                                               &weights, &dst, s, dl, pl, pr)
            : dnnl_dilated_convolution_backward_weights_desc_init(
                  d, dnnl_convolution_direct, &src, &weights, k->bias ? &bias : NULL, &dst, s,
                  dl, pl, pr);
    return st == dnnl_success ? 0 : dnnl_failed(st, "backward descriptor");
}

/* A backward pass's descriptor is made with the forward's as its hint. */
static int make_pd(const ConvKey *k, const_dnnl_primitive_attr_t attr, dnnl_primitive_desc_t *pd) {
    dnnl_convolution_desc_t d, fd;
    dnnl_primitive_desc_t hint = NULL;
    if (pass_desc(k, &d) != 0) return -1;
    dnnl_status_t st = dnnl_success;
    if (k->pass != CONV_FORWARD) {
        ConvKey fk = *k;
        fk.pass = CONV_FORWARD;
        if (forward_desc(&fk, &fd) != 0) return -1;
        st = dnnl_primitive_desc_create(&hint, &fd, attr, engine, NULL);
    }
    if (st == dnnl_success) st = dnnl_primitive_desc_create(pd, &d, attr, engine, hint);
    if (hint) dnnl_primitive_desc_destroy(hint);
    return st == dnnl_success ? 0 : dnnl_failed(st, "primitive descriptor");
}

/* Fills one argument: the primitive's layout from pd, and the reorder. */
static int plan_arg(ConvArg *a, const_dnnl_primitive_desc_t pd, dnnl_query_t query,
                    const dnnl_memory_desc_t *plain, int arg, bool output) {
    a->arg = arg;
    a->output = output;
    a->plain = *plain;
    a->inner = *dnnl_primitive_desc_query_md(pd, query, 0);
    a->reorder = NULL;
    if (dnnl_memory_desc_equal(&a->plain, &a->inner)) return 0;
    dnnl_primitive_desc_t rpd;
    const dnnl_memory_desc_t *from = output ? &a->inner : &a->plain;
    const dnnl_memory_desc_t *to = output ? &a->plain : &a->inner;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&rpd, from, engine, to, engine, NULL);
    if (st == dnnl_success) {
        st = dnnl_primitive_create(&a->reorder, rpd);
        dnnl_primitive_desc_destroy(rpd);
    }
    return st == dnnl_success ? 0 : dnnl_failed(st, "reorder");
}

/* The pass's three tensors in the order ConvPlan.args holds them. */
static int plan_args(ConvPlan *p, const_dnnl_primitive_desc_t pd) {
    dnnl_memory_desc_t src, weights, dst;
    conv_descs(&p->key, false, &src, &weights, &dst);
    switch (p->key.pass) {
    case CONV_FORWARD:
        return plan_arg(&p->args[0], pd, dnnl_query_src_md, &src, DNNL_ARG_SRC, false) ||
               plan_arg(&p->args[1], pd, dnnl_query_weights_md, &weights, DNNL_ARG_WEIGHTS,
                        false) ||
               plan_arg(&p->args[2], pd, dnnl_query_dst_md, &dst, DNNL_ARG_DST, true);
    case CONV_BACKWARD_DATA:
        return plan_arg(&p->args[0], pd, dnnl_query_diff_dst_md, &dst, DNNL_ARG_DIFF_DST, false) ||
               plan_arg(&p->args[1], pd, dnnl_query_weights_md, &weights, DNNL_ARG_WEIGHTS,
                        false) ||
               plan_arg(&p->args[2], pd, dnnl_query_diff_src_md, &src, DNNL_ARG_DIFF_SRC, true);
    case CONV_BACKWARD_WEIGHTS:
        return plan_arg(&p->args[0], pd, dnnl_query_src_md, &src, DNNL_ARG_SRC, false) ||
               plan_arg(&p->args[1], pd, dnnl_query_diff_dst_md, &dst, DNNL_ARG_DIFF_DST,
                        false) ||
               plan_arg(&p->args[2], pd, dnnl_query_diff_weights_md, &weights,
                        DNNL_ARG_DIFF_WEIGHTS, true);
    }
    return -1;
}

static void plan_free(ConvPlan *p) {
    if (!p) return;
    for (int i = 0; i < 3; i++)
        if (p->args[i].reorder) dnnl_primitive_destroy(p->args[i].reorder);
    if (p->primitive) dnnl_primitive_destroy(p->primitive);
    free(p);
}

static ConvPlan *plan_make(const ConvKey *k) {
    ConvPlan *p = calloc(1, sizeof *p);
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    if (!p) {
        error_set("conv2d: out of memory for a oneDNN plan");
        return NULL;
    }
    p->key = *k;
    dnnl_status_t st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    int rc = st == dnnl_success ? make_pd(k, attr, &pd) : dnnl_failed(st, "attributes");
    if (rc == 0) rc = plan_args(p, pd);
    if (rc == 0) {
        desc_plain(&p->bias, 1, &k->out_channels, false);
        p->scratch = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        const char *impl = NULL;
        if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success &&
            impl && !chosen_impl[0])
            strncpy(chosen_impl, impl, sizeof chosen_impl - 1);
        st = dnnl_primitive_create(&p->primitive, pd);
        if (st != dnnl_success) rc = dnnl_failed(st, "primitive");
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (rc != 0) {
        plan_free(p);
        return NULL;
    }
    return p;
}

/* The plan for k, made on first use. Plans live as long as the process:
 * a job's shapes are few, and the next job usually repeats them. */
static const ConvPlan *plan_for(const ConvKey *k) {
    pthread_mutex_lock(&plans_mu);
    dnnl_status_t st = engine ? dnnl_success : dnnl_engine_create(&engine, dnnl_cpu, 0);
    ConvPlan *p = plans;
    while (p && memcmp(&p->key, k, sizeof *k) != 0) p = p->next;
    if (!p && st == dnnl_success && (p = plan_make(k))) {
        p->next = plans;
        plans = p;
    }
    pthread_mutex_unlock(&plans_mu);
    if (st != dnnl_success) dnnl_failed(st, "engine");
    return p;
}

/* ---- running a plan ---- */

static int memory_for(const dnnl_memory_desc_t *md, void *data, dnnl_memory_t *m) {
    dnnl_status_t st = dnnl_memory_create(m, md, engine, data);
    return st == dnnl_success ? 0 : dnnl_failed(st, "memory");
}

static int run_reorder(dnnl_stream_t s, dnnl_primitive_t r, dnnl_memory_t from, dnnl_memory_t to) {
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    dnnl_status_t st = dnnl_primitive_execute(r, s, 2, args);
    return st == dnnl_success ? 0 : dnnl_failed(st, "reorder");
}

/* Scratch for one call: each argument's inner copy where it needs one,
 * then the scratchpad, in one block of the host allocator. */
typedef struct {
    void *block;
    dnnl_memory_t plain[3], inner[3], scratch, bias;
} ConvCall;

static void call_free(ConvCall *c) {
    for (int i = 0; i < 3; i++) {
        if (c->inner[i] && c->inner[i] != c->plain[i]) dnnl_memory_destroy(c->inner[i]);
        if (c->plain[i]) dnnl_memory_destroy(c->plain[i]);
    }
    if (c->scratch) dnnl_memory_destroy(c->scratch);
    if (c->bias) dnnl_memory_destroy(c->bias);
    cpu_free((Device){DEVICE_CPU, 0}, c->block);
}

static size_t round_up(size_t n) {
    return (n + 63) & ~(size_t)63;
}

static int call_prepare(const ConvPlan *p, void *const data[3], void *bias, ConvCall *c) {
    size_t bytes = round_up(dnnl_memory_desc_get_size(&p->scratch)), at = 0;
    for (int i = 0; i < 3; i++)
        if (p->args[i].reorder) bytes += round_up(dnnl_memory_desc_get_size(&p->args[i].inner));
    if (bytes && !(c->block = cpu_alloc((Device){DEVICE_CPU, 0}, bytes)))
        return error_set("conv2d: out of memory for %zu bytes of oneDNN scratch", bytes);
    for (int i = 0; i < 3; i++) {
        const ConvArg *a = &p->args[i];
        if (memory_for(&a->plain, data[i], &c->plain[i]) != 0) return -1;
        if (!a->reorder) {
            c->inner[i] = c->plain[i];
            continue;
        }
        if (memory_for(&a->inner, (char *)c->block + at, &c->inner[i]) != 0) return -1;
        at += round_up(dnnl_memory_desc_get_size(&a->inner));
    }
    if (memory_for(&p->scratch, (char *)c->block + at, &c->scratch) != 0) return -1;
    return bias ? memory_for(&p->bias, bias, &c->bias) : 0;
}

/* Inputs reordered in, the primitive, the output reordered out. */
static int call_run(const ConvPlan *p, ConvCall *c, dnnl_stream_t s) {
    dnnl_exec_arg_t args[5];
    int n = 0;
    for (int i = 0; i < 3; i++) {
        const ConvArg *a = &p->args[i];
        if (a->reorder && !a->output && run_reorder(s, a->reorder, c->plain[i], c->inner[i]) != 0)
            return -1;
        args[n++] = (dnnl_exec_arg_t){a->arg, c->inner[i]};
    }
    if (c->bias)
        args[n++] = (dnnl_exec_arg_t){
            p->key.pass == CONV_FORWARD ? DNNL_ARG_BIAS : DNNL_ARG_DIFF_BIAS, c->bias};
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, c->scratch};
    dnnl_status_t st = dnnl_primitive_execute(p->primitive, s, n, args);
    if (st != dnnl_success) return dnnl_failed(st, "convolution");
    const ConvArg *out = &p->args[2];
    if (out->reorder && run_reorder(s, out->reorder, c->inner[2], c->plain[2]) != 0) return -1;
    st = dnnl_stream_wait(s);
    return st == dnnl_success ? 0 : dnnl_failed(st, "stream");
}

/* Runs pass k over data (its three tensors in ConvPlan.args order) and
 * bias (the forward's bias or the weight pass's bias gradient, or NULL). */
static int conv_run(const ConvKey *k, void *const data[3], void *bias) {
    const ConvPlan *p = plan_for(k);
    if (!p) return -1;
    ConvCall c = {0};
    dnnl_stream_t s = NULL;
    dnnl_status_t st = dnnl_stream_create(&s, engine, dnnl_stream_default_flags);
    int rc = st == dnnl_success ? call_prepare(p, data, bias, &c) : dnnl_failed(st, "stream");
    if (rc == 0) rc = call_run(p, &c, s);
    call_free(&c);
    if (s) dnnl_stream_destroy(s);
    return rc;
}

static bool taken(const Tensor *t) {
    return atomic_load(&library_on) && t->dtype == DTYPE_FLOAT32;
}

static ConvKey key_of(ConvPass pass, const Window2d *w, int groups, int64_t out_channels,
                      bool bias) {
    ConvKey k;
    memset(&k, 0, sizeof k); /* padding too: keys are compared with memcmp */
    k.pass = pass, k.w = *w, k.groups = groups, k.out_channels = out_channels, k.bias = bias;
    return k;
}

int cpu_conv2d(const Window2d *w, int groups, const Tensor *x, const Tensor *weight,
               const Tensor *bias, Tensor *out) {
    if (!taken(x)) return 1;
    ConvKey k = key_of(CONV_FORWARD, w, groups, weight->shape[0], bias != NULL);
    void *data[3] = {tensor_data(x), tensor_data(weight), tensor_data(out)};
    return conv_run(&k, data, bias ? tensor_data(bias) : NULL);
}

int cpu_conv2d_backward_data(const Window2d *w, int groups, const Tensor *weight,
                             const Tensor *gy, Tensor *gx) {
    if (!taken(gy)) return 1;
    ConvKey k = key_of(CONV_BACKWARD_DATA, w, groups, weight->shape[0], false);
    void *data[3] = {tensor_data(gy), tensor_data(weight), tensor_data(gx)};
    return conv_run(&k, data, NULL);
}

int cpu_conv2d_backward_weights(const Window2d *w, int groups, const Tensor *x,
                                const Tensor *gy, Tensor *gw, Tensor *gb) {
    if (!taken(x)) return 1;
    ConvKey k = key_of(CONV_BACKWARD_WEIGHTS, w, groups, gw->shape[0], gb != NULL);
    void *data[3] = {tensor_data(x), tensor_data(gy), tensor_data(gw)};
    return conv_run(&k, data, gb ? tensor_data(gb) : NULL);
}
