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
 * x, out and their gradients may also be in the blocked layout, 5-d
 * [N, C/16, H, W, 16] tensors (core/ops.h's TENSOR_BLOCK): that is then
 * the plain side of their reorders, none where the primitive chose it.
 *
 * float32 only: other dtypes (the float64 gradient checks) return 1 and
 * take ops/conv2d.c's im2col + GEMM, as does every call while
 * cpu_conv_library(false) (tests of that path).
 */
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "core/cpu/dnnl.h"
#include "core/error.h"

typedef struct {
    DnnlConvPass pass;
    DnnlConvShape shape;
    bool bias;
    bool src_blocked, dst_blocked; /* x / out (and gradients) in nChw16c, not NCHW */
    dnnl_data_type_t in;           /* what it reads: f32, or bf16 under that precision */
} ConvKey;

/* One tensor argument: its plain layout, the primitive's, and the reorder
 * from one to the other (in the direction the data flows; NULL when the
 * two are the same layout). */
typedef struct {
    int arg; /* DNNL_ARG_SRC, ... */
    bool output;
    dnnl_memory_desc_t plain, inner;
    dnnl_primitive_t reorder;
} ConvArg;

typedef struct {
    ConvKey key;
    dnnl_primitive_t primitive;
    ConvArg args[3];
    dnnl_memory_desc_t bias, scratch;
} ConvPlan;

static char chosen_impl[64];

const char *cpu_conv_library_impl(void) {
    return chosen_impl[0] ? chosen_impl : NULL;
}

/* The pass's primitive descriptor; a backward pass's is made with the
 * forward's as its hint. */
static int make_pd(const ConvKey *k, const_dnnl_primitive_attr_t attr, dnnl_primitive_desc_t *pd) {
    dnnl_engine_t engine = cpu_dnnl_engine();
    if (!engine) return -1;
    dnnl_memory_desc_t bias;
    cpu_dnnl_desc(&bias, 1, &k->shape.out_channels, false);
    const dnnl_memory_desc_t *b = k->bias ? &bias : NULL;
    dnnl_convolution_desc_t d, fd;
    dnnl_primitive_desc_t hint = NULL;
    dnnl_status_t st = cpu_dnnl_conv_desc(&k->shape, k->pass, k->in, b, NULL, &d);
    if (st != dnnl_success) return cpu_dnnl_failed(st, "convolution descriptor");
    if (k->pass != DNNL_CONV_FORWARD) {
        st = cpu_dnnl_conv_desc(&k->shape, DNNL_CONV_FORWARD, k->in, b, NULL, &fd);
        if (st != dnnl_success) return cpu_dnnl_failed(st, "convolution descriptor");
        st = dnnl_primitive_desc_create(&hint, &fd, attr, engine, NULL);
    }
    if (st == dnnl_success) st = dnnl_primitive_desc_create(pd, &d, attr, engine, hint);
    if (hint) dnnl_primitive_desc_destroy(hint);
    return st == dnnl_success ? 0 : cpu_dnnl_failed(st, "primitive descriptor");
}

/* Fills one argument: the primitive's layout from pd, and the reorder. */
static int plan_arg(ConvArg *a, const_dnnl_primitive_desc_t pd, dnnl_query_t query,
                    const dnnl_memory_desc_t *plain, int arg, bool output) {
    a->arg = arg;
    a->output = output;
    a->plain = *plain;
    a->inner = *dnnl_primitive_desc_query_md(pd, query, 0);
    return output ? cpu_dnnl_reorder(&a->inner, &a->plain, &a->reorder)
                  : cpu_dnnl_reorder(&a->plain, &a->inner, &a->reorder);
}

/* The pass's three tensors in the order ConvPlan.args holds them. */
static int plan_args(ConvPlan *p, const_dnnl_primitive_desc_t pd) {
    dnnl_memory_desc_t src, weights, dst;
    cpu_dnnl_conv_descs(&p->key.shape, false, &src, &weights, &dst);
    if (p->key.src_blocked) src = cpu_dnnl_blocked_desc(src.dims);
    if (p->key.dst_blocked) dst = cpu_dnnl_blocked_desc(dst.dims);
    switch (p->key.pass) {
    case DNNL_CONV_FORWARD:
        return plan_arg(&p->args[0], pd, dnnl_query_src_md, &src, DNNL_ARG_SRC, false) ||
               plan_arg(&p->args[1], pd, dnnl_query_weights_md, &weights, DNNL_ARG_WEIGHTS,
                        false) ||
               plan_arg(&p->args[2], pd, dnnl_query_dst_md, &dst, DNNL_ARG_DST, true);
    case DNNL_CONV_BACKWARD_DATA:
        return plan_arg(&p->args[0], pd, dnnl_query_diff_dst_md, &dst, DNNL_ARG_DIFF_DST, false) ||
               plan_arg(&p->args[1], pd, dnnl_query_weights_md, &weights, DNNL_ARG_WEIGHTS,
                        false) ||
               plan_arg(&p->args[2], pd, dnnl_query_diff_src_md, &src, DNNL_ARG_DIFF_SRC, true);
    case DNNL_CONV_BACKWARD_WEIGHTS:
        return plan_arg(&p->args[0], pd, dnnl_query_src_md, &src, DNNL_ARG_SRC, false) ||
               plan_arg(&p->args[1], pd, dnnl_query_diff_dst_md, &dst, DNNL_ARG_DIFF_DST, false) ||
               plan_arg(&p->args[2], pd, dnnl_query_diff_weights_md, &weights,
                        DNNL_ARG_DIFF_WEIGHTS, true);
    }
    return -1;
}

static void plan_free(void *plan) {
    ConvPlan *p = plan;
    if (!p) return;
    for (int i = 0; i < 3; i++)
        if (p->args[i].reorder) dnnl_primitive_destroy(p->args[i].reorder);
    if (p->primitive) dnnl_primitive_destroy(p->primitive);
    free(p);
}

static void *plan_make(const void *key) {
    const ConvKey *k = key;
    ConvPlan *p = calloc(1, sizeof *p);
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    if (!p) {
        error_set("conv2d: out of memory for a oneDNN plan");
        return NULL;
    }
    p->key = *k;
    dnnl_status_t st = cpu_dnnl_user_scratchpad(&attr);
    int rc = st == dnnl_success ? make_pd(k, attr, &pd) : cpu_dnnl_failed(st, "attributes");
    if (rc == 0) rc = plan_args(p, pd);
    if (rc == 0) {
        cpu_dnnl_desc(&p->bias, 1, &k->shape.out_channels, false);
        p->scratch = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        const char *impl = NULL;
        if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success &&
            impl && !chosen_impl[0])
            strncpy(chosen_impl, impl, sizeof chosen_impl - 1);
        st = dnnl_primitive_create(&p->primitive, pd);
        if (st != dnnl_success) rc = cpu_dnnl_failed(st, "primitive");
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (rc != 0) {
        plan_free(p);
        return NULL;
    }
    return p;
}

static DnnlPlanCache plans = DNNL_PLAN_CACHE_INIT;

/* ---- running a plan ---- */

/* Memory for the three tensors, the bias and the scratchpad: each
 * argument's inner copy where it needs one comes from the arena. */
static int call_memory(const ConvPlan *p, DnnlCall *c, void *const data[3], void *bias,
                       dnnl_memory_t plain[3], dnnl_memory_t inner[3], dnnl_memory_t *b,
                       dnnl_memory_t *scratch) {
    for (int i = 0; i < 3; i++) {
        const ConvArg *a = &p->args[i];
        if (!(plain[i] = cpu_dnnl_call_memory(c, &a->plain, data[i]))) return -1;
        inner[i] = a->reorder ? cpu_dnnl_call_memory(c, &a->inner, NULL) : plain[i];
        if (!inner[i]) return -1;
    }
    *b = bias ? cpu_dnnl_call_memory(c, &p->bias, bias) : NULL;
    *scratch = cpu_dnnl_call_memory(c, &p->scratch, NULL);
    return (bias && !*b) || !*scratch ? -1 : 0;
}

/* Inputs reordered in, the primitive, the output reordered out. */
static int call_run(const ConvPlan *p, DnnlCall *c, void *const data[3], void *bias) {
    dnnl_memory_t plain[3], inner[3], b, scratch;
    if (call_memory(p, c, data, bias, plain, inner, &b, &scratch) != 0) return -1;
    dnnl_exec_arg_t args[5];
    int n = 0;
    for (int i = 0; i < 3; i++) {
        const ConvArg *a = &p->args[i];
        if (a->reorder && !a->output &&
            cpu_dnnl_reorder_run(c->stream, a->reorder, plain[i], inner[i]) != 0)
            return -1;
        args[n++] = (dnnl_exec_arg_t){a->arg, inner[i]};
    }
    if (b)
        args[n++] = (dnnl_exec_arg_t){
            p->key.pass == DNNL_CONV_FORWARD ? DNNL_ARG_BIAS : DNNL_ARG_DIFF_BIAS, b};
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, scratch};
    if (cpu_dnnl_execute(p->primitive, c->stream, n, args, "convolution") != 0) return -1;
    const ConvArg *out = &p->args[2];
    return out->reorder ? cpu_dnnl_reorder_run(c->stream, out->reorder, inner[2], plain[2]) : 0;
}

/* Runs pass k over data (its three tensors in ConvPlan.args order) and
 * bias (the forward's bias or the weight pass's bias gradient, or NULL). */
static int conv_run(const ConvKey *k, void *const data[3], void *bias) {
    bool owned;
    ConvPlan *p = cpu_dnnl_plan(&plans, k, sizeof *k, plan_make, plan_free, &owned);
    if (!p) return -1;
    size_t bytes = cpu_dnnl_arena_bytes(dnnl_memory_desc_get_size(&p->scratch));
    for (int i = 0; i < 3; i++)
        if (p->args[i].reorder)
            bytes += cpu_dnnl_arena_bytes(dnnl_memory_desc_get_size(&p->args[i].inner));
    DnnlCall c;
    int rc = cpu_dnnl_call_open(&c, bytes);
    if (rc == 0) rc = call_run(p, &c, data, bias);
    rc = cpu_dnnl_call_close(&c, rc);
    if (owned) plan_free(p);
    return rc;
}

/* src and dst: the pass's input-side and output-side tensors, each 5-d
 * when it holds the blocked layout (core/ops.h's TENSOR_BLOCK). */
static ConvKey key_of(DnnlConvPass pass, const Window2d *w, int groups, int64_t out_channels,
                      bool bias, const Tensor *src, const Tensor *dst) {
    ConvKey k;
    memset(&k, 0, sizeof k); /* padding too: keys are compared with memcmp */
    k.pass = pass, k.bias = bias, k.in = cpu_dnnl_input_type();
    k.src_blocked = src->ndim == 5, k.dst_blocked = dst->ndim == 5;
    k.shape.w = *w, k.shape.groups = groups, k.shape.out_channels = out_channels;
    return k;
}

int cpu_conv2d(const Window2d *w, int groups, const Tensor *x, const Tensor *weight,
               const Tensor *bias, Tensor *out) {
    if (!cpu_dnnl_takes(x)) return 1;
    ConvKey k = key_of(DNNL_CONV_FORWARD, w, groups, weight->shape[0], bias != NULL, x, out);
    void *data[3] = {tensor_data(x), tensor_data(weight), tensor_data(out)};
    return conv_run(&k, data, bias ? tensor_data(bias) : NULL);
}

int cpu_conv2d_backward_data(const Window2d *w, int groups, const Tensor *weight, const Tensor *gy,
                             Tensor *gx) {
    if (!cpu_dnnl_takes(gy)) return 1;
    ConvKey k = key_of(DNNL_CONV_BACKWARD_DATA, w, groups, weight->shape[0], false, gx, gy);
    void *data[3] = {tensor_data(gy), tensor_data(weight), tensor_data(gx)};
    return conv_run(&k, data, NULL);
}

int cpu_conv2d_backward_weights(const Window2d *w, int groups, const Tensor *x, const Tensor *gy,
                                Tensor *gw, Tensor *gb) {
    if (!cpu_dnnl_takes(x)) return 1;
    ConvKey k = key_of(DNNL_CONV_BACKWARD_WEIGHTS, w, groups, gw->shape[0], gb != NULL, x, gy);
    void *data[3] = {tensor_data(x), tensor_data(gy), tensor_data(gw)};
    return conv_run(&k, data, gb ? tensor_data(gb) : NULL);
}
