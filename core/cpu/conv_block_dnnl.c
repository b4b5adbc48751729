/* conv_block_dnnl.c - Conv2d -> ReLU -> MaxPool2d on oneDNN with the
 * convolution's blocked layout (nChw16c on AVX-512) kept from the
 * convolution through the ReLU and the pooling, so only the input, the
 * pooled output (a quarter of the convolution's) and their gradients
 * cross between layouts. The ReLU runs inside the convolution (a post-op)
 * and its backward on the saved output; the pooling keeps its argmax in
 * oneDNN's workspace.
 *
 * Forward:  x -> [src] -conv+relu-> y -maxpool-> [pooled] -> out
 * Backward: gy -> [pooled layout] -maxpool bwd-> dy -relu bwd (y)-> dy
 *           dy -conv bwd data-> gx,  dy + x -conv bwd weights-> gw, gb
 * where [..] are reorders, done only where the layouts differ. y and the
 * workspace are what the backward keeps (saved[0], saved[1]). Between two
 * blocks in a row x, out and their gradients are nChw16c too
 * (ConvReluPool's x_blocked, out_blocked), so the layout runs from one
 * convolution to the next with no reorder.
 *
 * A plan holds every primitive of both passes, made on first use per
 * shape; if oneDNN refuses any of them the block returns 1 and the three
 * ops run one by one, so a forward never starts what its backward could
 * not finish.
 */
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "core/cpu/dnnl.h"
#include "core/error.h"

/* The block, and what its convolutions read: f32, or bf16 under that
 * precision (y, the pooling and dy stay f32; dy is reordered to bf16 for
 * the convolution's backward). */
typedef struct {
    ConvReluPool block;
    dnnl_data_type_t in;
} BlockKey;

typedef struct {
    ConvReluPool key;
    dnnl_data_type_t in;
    dnnl_memory_desc_t x, w, out, bias;                    /* ours: nchw, oihw / goihw, nchw, a */
    dnnl_memory_desc_t src, weights, y, pooled, workspace; /* the forward's */
    dnnl_memory_desc_t bd_weights, bd_diff_src, bw_src, bw_diff_weights; /* the backward's */
    dnnl_memory_desc_t dy_in; /* dy as the backward passes read it */
    dnnl_primitive_t conv, pool, pool_bwd, relu_bwd, bwd_data, bwd_weights;
    dnnl_primitive_t to_src, to_weights, from_pooled; /* forward reorders */
    dnnl_primitive_t to_pooled, to_bd_weights, from_bd_diff_src, to_bw_src, from_bw_diff_weights;
    dnnl_primitive_t to_dy_in;     /* NULL: dy_in is dy */
    bool own_pool;                 /* y in nChw16c and a 2x2 stride-2 pool: pool_blocked.c */
    size_t scratch;                /* the largest scratchpad of its primitives */
    dnnl_memory_desc_t scratch_md; /* bytes for it */
    bool made;                     /* false: oneDNN refused; the three ops run instead */
} BlockPlan;

static void plan_free(void *plan) {
    BlockPlan *p = plan;
    if (!p) return;
    dnnl_primitive_t all[] = {p->conv,          p->pool,
                              p->pool_bwd,      p->relu_bwd,
                              p->bwd_data,      p->bwd_weights,
                              p->to_src,        p->to_weights,
                              p->from_pooled,   p->to_pooled,
                              p->to_bd_weights, p->from_bd_diff_src,
                              p->to_bw_src,     p->from_bw_diff_weights,
                              p->to_dy_in};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (all[i]) dnnl_primitive_destroy(all[i]);
    free(p);
}

/* pd's primitive into *prim, its scratchpad counted; pd destroyed unless
 * kept (a hint for a backward). */
static int primitive_of(BlockPlan *p, dnnl_primitive_desc_t pd, dnnl_primitive_t *prim) {
    size_t s =
        dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
    if (s > p->scratch) p->scratch = s;
    dnnl_status_t st = dnnl_primitive_create(prim, pd);
    return st == dnnl_success ? 0 : cpu_dnnl_failed(st, "primitive");
}

/* The primitive descriptor of desc, whose init returned `init` (what:
 * its name for the error). */
static int pd_create(dnnl_status_t init, const char *what, dnnl_primitive_desc_t *pd,
                     const void *desc, const_dnnl_primitive_attr_t attr,
                     const_dnnl_primitive_desc_t hint) {
    *pd = NULL;
    if (init != dnnl_success) return cpu_dnnl_failed(init, what);
    dnnl_status_t st = dnnl_primitive_desc_create(pd, desc, attr, cpu_dnnl_engine(), hint);
    if (st != dnnl_success) *pd = NULL;
    return st == dnnl_success ? 0 : cpu_dnnl_failed(st, "primitive descriptor");
}

static const dnnl_memory_desc_t *md_of(const_dnnl_primitive_desc_t pd, dnnl_query_t q) {
    return dnnl_primitive_desc_query_md(pd, q, 0);
}

/* The convolution with the ReLU as a post-op; src, weights and y chosen
 * by oneDNN. *pd kept as the backward passes' hint. */
static int make_conv(BlockPlan *p, const_dnnl_primitive_attr_t base, dnnl_primitive_desc_t *pd) {
    const ConvReluPool *k = &p->key;
    DnnlConvShape shape = {k->conv, k->out_channels, k->groups};
    dnnl_convolution_desc_t d;
    dnnl_status_t st =
        cpu_dnnl_conv_desc(&shape, DNNL_CONV_FORWARD, p->in, k->bias ? &p->bias : NULL, NULL, &d);
    if (st != dnnl_success) return cpu_dnnl_failed(st, "convolution descriptor");
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    st = dnnl_primitive_attr_clone(&attr, base);
    if (st == dnnl_success) st = dnnl_post_ops_create(&ops);
    if (st == dnnl_success) st = dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0, 0);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(attr, ops);
    int rc = pd_create(st, "post-op", pd, &d, attr, NULL);
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (rc != 0) return -1;
    p->src = *md_of(*pd, dnnl_query_src_md);
    p->weights = *md_of(*pd, dnnl_query_weights_md);
    p->y = *md_of(*pd, dnnl_query_dst_md);
    return primitive_of(p, *pd, &p->conv);
}

/* The [N][C/16] blocks of 16 channels of the pooling's input. */
static int64_t blocks_of(const Window2d *w) {
    return w->batch * ((w->channels + 15) / 16);
}

/* pool_blocked.c's 2x2 stride-2 pooling where y came out in nChw16c:
 * pooled in nChw16c too, the argmax a byte per pooled element. */
static bool own_pool(BlockPlan *p) {
    const Window2d *w = &p->key.pool;
    dnnl_memory_desc_t blocked =
        cpu_dnnl_blocked_desc((dnnl_dims_t){w->batch, w->channels, w->height, w->width});
    if (!(backend_window2d_2x2(w) && dnnl_memory_desc_equal(&blocked, &p->y)))
        return false;
    p->pooled = cpu_dnnl_blocked_desc((dnnl_dims_t){w->batch, w->channels, w->out_h, w->out_w});
    int64_t blocks = blocks_of(w);
    dnnl_memory_desc_init_by_tag(&p->workspace, 1, (dnnl_dims_t){blocks * w->out_h * w->out_w * 16},
                                 dnnl_u8, dnnl_a);
    return p->own_pool = true;
}

/* Max pooling over y, both ways; pooled chosen by oneDNN. */
static int make_pool(BlockPlan *p, const_dnnl_primitive_attr_t attr) {
    if (own_pool(p)) return 0;
    const Window2d *w = &p->key.pool;
    dnnl_dims_t s, dl, pl, pr, kernel = {w->kernel_h, w->kernel_w};
    cpu_dnnl_geometry(w, s, dl, pl, pr);
    dnnl_memory_desc_t any;
    cpu_dnnl_desc(&any, 4, (int64_t[]){w->batch, w->channels, w->out_h, w->out_w}, true);
    dnnl_pooling_desc_t fd, bd;
    dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
    dnnl_status_t st = dnnl_pooling_forward_desc_init(&fd, dnnl_forward_training, dnnl_pooling_max,
                                                      &p->y, &any, s, kernel, pl, pr);
    int rc = pd_create(st, "pooling descriptor", &fpd, &fd, attr, NULL);
    if (rc == 0) {
        p->pooled = *md_of(fpd, dnnl_query_dst_md);
        p->workspace = *md_of(fpd, dnnl_query_workspace_md);
        rc = primitive_of(p, fpd, &p->pool);
    }
    if (rc == 0) {
        st = dnnl_pooling_backward_desc_init(&bd, dnnl_pooling_max, &p->y, &p->pooled, s, kernel,
                                             pl, pr);
        rc = pd_create(st, "pooling descriptor", &bpd, &bd, attr, fpd);
    }
    if (rc == 0) rc = primitive_of(p, bpd, &p->pool_bwd);
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (bpd) dnnl_primitive_desc_destroy(bpd);
    return rc;
}

/* ReLU's backward from its output y, in y's layout, in place. */
static int make_relu_bwd(BlockPlan *p, const_dnnl_primitive_attr_t attr) {
    if (p->own_pool) return 0; /* folded into the pooling's backward */
    dnnl_eltwise_desc_t fd, bd;
    dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
    dnnl_status_t st = dnnl_eltwise_forward_desc_init(
        &fd, dnnl_forward_training, dnnl_eltwise_relu_use_dst_for_bwd, &p->y, 0, 0);
    int rc = pd_create(st, "eltwise descriptor", &fpd, &fd, attr, NULL);
    if (rc == 0) {
        st = dnnl_eltwise_backward_desc_init(&bd, dnnl_eltwise_relu_use_dst_for_bwd, &p->y, &p->y,
                                             0, 0);
        rc = pd_create(st, "eltwise descriptor", &bpd, &bd, attr, fpd);
    }
    if (rc == 0) rc = primitive_of(p, bpd, &p->relu_bwd);
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (bpd) dnnl_primitive_desc_destroy(bpd);
    return rc;
}

/* The convolution's two backward passes, reading dy in y's layout. */
static int make_conv_bwd(BlockPlan *p, const_dnnl_primitive_attr_t attr,
                         const_dnnl_primitive_desc_t hint) {
    const ConvReluPool *k = &p->key;
    DnnlConvShape shape = {k->conv, k->out_channels, k->groups};
    p->dy_in = cpu_dnnl_retyped(&p->y, p->in);
    dnnl_convolution_desc_t dd, wd;
    dnnl_primitive_desc_t dpd = NULL, wpd = NULL;
    dnnl_status_t st =
        cpu_dnnl_conv_desc(&shape, DNNL_CONV_BACKWARD_DATA, p->in, NULL, &p->dy_in, &dd);
    int rc = pd_create(st, "convolution descriptor", &dpd, &dd, attr, hint);
    if (rc == 0) {
        p->bd_weights = *md_of(dpd, dnnl_query_weights_md);
        p->bd_diff_src = *md_of(dpd, dnnl_query_diff_src_md);
        rc = primitive_of(p, dpd, &p->bwd_data);
    }
    if (rc == 0) {
        st = cpu_dnnl_conv_desc(&shape, DNNL_CONV_BACKWARD_WEIGHTS, p->in,
                                k->bias ? &p->bias : NULL, &p->dy_in, &wd);
        rc = pd_create(st, "convolution descriptor", &wpd, &wd, attr, hint);
    }
    if (rc == 0) {
        p->bw_src = *md_of(wpd, dnnl_query_src_md);
        p->bw_diff_weights = *md_of(wpd, dnnl_query_diff_weights_md);
        rc = primitive_of(p, wpd, &p->bwd_weights);
    }
    if (dpd) dnnl_primitive_desc_destroy(dpd);
    if (wpd) dnnl_primitive_desc_destroy(wpd);
    return rc;
}

static int make_reorders(BlockPlan *p) {
    return cpu_dnnl_reorder(&p->x, &p->src, &p->to_src) ||
           cpu_dnnl_reorder(&p->w, &p->weights, &p->to_weights) ||
           cpu_dnnl_reorder(&p->pooled, &p->out, &p->from_pooled) ||
           cpu_dnnl_reorder(&p->out, &p->pooled, &p->to_pooled) ||
           cpu_dnnl_reorder(&p->w, &p->bd_weights, &p->to_bd_weights) ||
           cpu_dnnl_reorder(&p->bd_diff_src, &p->x, &p->from_bd_diff_src) ||
           cpu_dnnl_reorder(&p->x, &p->bw_src, &p->to_bw_src) ||
           cpu_dnnl_reorder(&p->bw_diff_weights, &p->w, &p->from_bw_diff_weights) ||
           cpu_dnnl_reorder(&p->y, &p->dy_in, &p->to_dy_in);
}

/* Every primitive of both passes, or made = false when oneDNN refuses
 * one (the error is dropped: the three ops will run instead). */
static void *plan_make(const void *key) {
    BlockPlan *p = calloc(1, sizeof *p);
    if (!p) {
        error_set("conv2d: out of memory for a oneDNN plan");
        return NULL;
    }
    p->key = ((const BlockKey *)key)->block;
    p->in = ((const BlockKey *)key)->in;
    DnnlConvShape shape = {p->key.conv, p->key.out_channels, p->key.groups};
    dnnl_memory_desc_t y_plain;
    cpu_dnnl_conv_descs(&shape, false, &p->x, &p->w, &y_plain);
    if (p->key.x_blocked) p->x = cpu_dnnl_blocked_desc(p->x.dims);
    const Window2d *pw = &p->key.pool;
    cpu_dnnl_desc(&p->out, 4, (int64_t[]){pw->batch, pw->channels, pw->out_h, pw->out_w}, false);
    if (p->key.out_blocked) p->out = cpu_dnnl_blocked_desc(p->out.dims);
    cpu_dnnl_desc(&p->bias, 1, &p->key.out_channels, false);
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t conv_pd = NULL;
    dnnl_status_t st = cpu_dnnl_user_scratchpad(&attr);
    p->made = st == dnnl_success && cpu_dnnl_engine() && make_conv(p, attr, &conv_pd) == 0 &&
              make_pool(p, attr) == 0 && make_relu_bwd(p, attr) == 0 &&
              make_conv_bwd(p, attr, conv_pd) == 0 && make_reorders(p) == 0;
    if (conv_pd) dnnl_primitive_desc_destroy(conv_pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    dnnl_memory_desc_init_by_tag(&p->scratch_md, 1, (dnnl_dims_t){(int64_t)p->scratch + 1}, dnnl_u8,
                                 dnnl_a);
    error_clear();
    return p;
}

static DnnlPlanCache plans = DNNL_PLAN_CACHE_INIT;

/* The plan for b, NULL with an error; made false when oneDNN refused it.
 * *owned: plan_free it after the call. */
static BlockPlan *plan_for(const ConvReluPool *b, bool *owned) {
    BlockKey key;
    memset(&key, 0, sizeof key); /* padding too: keys are compared as bytes */
    key.block.conv = b->conv, key.block.out_channels = b->out_channels;
    key.block.groups = b->groups, key.block.bias = b->bias, key.block.pool = b->pool;
    key.block.x_blocked = b->x_blocked, key.block.out_blocked = b->out_blocked;
    key.in = cpu_dnnl_input_type();
    return cpu_dnnl_plan(&plans, &key, sizeof key, plan_make, plan_free, owned);
}

/* from -> a new piece of the arena in layout md through r, or from itself
 * when r is NULL (the same layout). */
static dnnl_memory_t reordered(DnnlCall *c, dnnl_primitive_t r, dnnl_memory_t from,
                               const dnnl_memory_desc_t *md) {
    if (!r || !from) return from;
    dnnl_memory_t to = cpu_dnnl_call_memory(c, md, NULL);
    return to && cpu_dnnl_reorder_run(c->stream, r, from, to) == 0 ? to : NULL;
}

/* An output in layout md that ends in plain memory `to` through r: the
 * arena's piece when r is set, `to` itself when not. */
static dnnl_memory_t output_for(DnnlCall *c, dnnl_primitive_t r, dnnl_memory_t to,
                                const dnnl_memory_desc_t *md) {
    return r && to ? cpu_dnnl_call_memory(c, md, NULL) : to;
}

static size_t bytes_of(const dnnl_memory_desc_t *md) {
    return cpu_dnnl_arena_bytes(dnnl_memory_desc_get_size(md));
}

/* The 2x2 pool of our own: y (the ReLU's output) is the call's scratch,
 * and the blocked pooled output is what the backward keeps (`keep`): at
 * a window's argmax y is the pooled value, so it alone says where the
 * ReLU passes the gradient, and a quarter of y's size is kept and read.
 * out gets it in its own layout; where that is nChw16c (a chain), keep is
 * out's own storage. */
static int own_pool_run(const BlockPlan *p, DnnlCall *c, dnnl_memory_t my, dnnl_memory_t mo,
                        Tensor *keep, Tensor *ws) {
    const Window2d *w = &p->key.pool;
    if (cpu_dnnl_wait(c) != 0) return -1;
    cpu_max_pool_2x2_blocked(cpu_dnnl_data(my), blocks_of(w), w->height, w->width,
                             tensor_data(keep), tensor_data(ws));
    dnnl_memory_t kept = cpu_dnnl_call_memory(c, &p->pooled, tensor_data(keep));
    if (!kept) return -1;
    if (p->from_pooled) return cpu_dnnl_reorder_run(c->stream, p->from_pooled, kept, mo);
    if (cpu_dnnl_data(mo) != tensor_data(keep))
        memcpy(cpu_dnnl_data(mo), tensor_data(keep), dnnl_memory_desc_get_size(&p->pooled));
    return 0;
}

/* keep: what the backward reads besides the workspace (y, or with our own
 * pool the pooled output). */
static int forward_run(const BlockPlan *p, DnnlCall *c, const Tensor *x, const Tensor *weight,
                       const Tensor *bias, Tensor *out, Tensor *keep, Tensor *ws) {
    dnnl_memory_t mx = cpu_dnnl_call_memory(c, &p->x, tensor_data(x));
    dnnl_memory_t mw = cpu_dnnl_call_memory(c, &p->w, tensor_data(weight));
    dnnl_memory_t mo = cpu_dnnl_call_memory(c, &p->out, tensor_data(out));
    dnnl_memory_t my = cpu_dnnl_call_memory(c, &p->y, p->own_pool ? NULL : tensor_data(keep));
    dnnl_memory_t mws = cpu_dnnl_call_memory(c, &p->workspace, tensor_data(ws));
    dnnl_memory_t mb = bias ? cpu_dnnl_call_memory(c, &p->bias, tensor_data(bias)) : NULL;
    dnnl_memory_t msc = cpu_dnnl_call_memory(c, &p->scratch_md, NULL);
    dnnl_memory_t src = reordered(c, p->to_src, mx, &p->src);
    dnnl_memory_t wts = reordered(c, p->to_weights, mw, &p->weights);
    dnnl_memory_t pooled = p->own_pool ? mo : output_for(c, p->from_pooled, mo, &p->pooled);
    if (!src || !wts || !pooled || !my || !mws || !msc || (bias && !mb)) return -1;
    dnnl_exec_arg_t conv[5] = {{DNNL_ARG_SRC, src},
                               {DNNL_ARG_WEIGHTS, wts},
                               {DNNL_ARG_DST, my},
                               {DNNL_ARG_SCRATCHPAD, msc},
                               {DNNL_ARG_BIAS, mb}};
    dnnl_exec_arg_t pool[4] = {{DNNL_ARG_SRC, my},
                               {DNNL_ARG_DST, pooled},
                               {DNNL_ARG_WORKSPACE, mws},
                               {DNNL_ARG_SCRATCHPAD, msc}};
    if (cpu_dnnl_execute(p->conv, c->stream, bias ? 5 : 4, conv, "convolution") != 0) return -1;
    if (p->own_pool) return own_pool_run(p, c, my, mo, keep, ws);
    if (cpu_dnnl_execute(p->pool, c->stream, 4, pool, "pooling") != 0) return -1;
    return p->from_pooled ? cpu_dnnl_reorder_run(c->stream, p->from_pooled, pooled, mo) : 0;
}

static int backward_weights(const BlockPlan *p, DnnlCall *c, dnnl_memory_t mx, dnnl_memory_t dy,
                            Tensor *gw, Tensor *gb, dnnl_memory_t msc) {
    dnnl_memory_t mgw = cpu_dnnl_call_memory(c, &p->w, gw ? tensor_data(gw) : NULL);
    dnnl_memory_t mgb = gb ? cpu_dnnl_call_memory(c, &p->bias, tensor_data(gb)) : NULL;
    dnnl_memory_t src = reordered(c, p->to_bw_src, mx, &p->bw_src);
    dnnl_memory_t inner = output_for(c, p->from_bw_diff_weights, mgw, &p->bw_diff_weights);
    if (!src || !inner || (gb && !mgb)) return -1;
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, src},
                               {DNNL_ARG_DIFF_DST, dy},
                               {DNNL_ARG_DIFF_WEIGHTS, inner},
                               {DNNL_ARG_SCRATCHPAD, msc},
                               {DNNL_ARG_DIFF_BIAS, mgb}};
    if (cpu_dnnl_execute(p->bwd_weights, c->stream, gb ? 5 : 4, args, "convolution") != 0)
        return -1;
    return p->from_bw_diff_weights && gw
               ? cpu_dnnl_reorder_run(c->stream, p->from_bw_diff_weights, inner, mgw)
               : 0;
}

static int backward_data(const BlockPlan *p, DnnlCall *c, dnnl_memory_t mw, dnnl_memory_t dy,
                         Tensor *gx, dnnl_memory_t msc) {
    dnnl_memory_t mgx = cpu_dnnl_call_memory(c, &p->x, tensor_data(gx));
    dnnl_memory_t wts = reordered(c, p->to_bd_weights, mw, &p->bd_weights);
    dnnl_memory_t inner = output_for(c, p->from_bd_diff_src, mgx, &p->bd_diff_src);
    if (!wts || !inner) return -1;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_DIFF_DST, dy},
                               {DNNL_ARG_WEIGHTS, wts},
                               {DNNL_ARG_DIFF_SRC, inner},
                               {DNNL_ARG_SCRATCHPAD, msc}};
    if (cpu_dnnl_execute(p->bwd_data, c->stream, 4, args, "convolution") != 0) return -1;
    return p->from_bd_diff_src ? cpu_dnnl_reorder_run(c->stream, p->from_bd_diff_src, inner, mgx)
                               : 0;
}

/* gy -> dy (the gradient of y, in y's layout) through the pooling's and
 * the ReLU's backward. */
static dnnl_memory_t backward_to_y(const BlockPlan *p, DnnlCall *c, const Tensor *gy,
                                   Tensor *const *saved, dnnl_memory_t msc) {
    dnnl_memory_t mgy = cpu_dnnl_call_memory(c, &p->out, tensor_data(gy));
    dnnl_memory_t my = p->own_pool ? NULL : cpu_dnnl_call_memory(c, &p->y, tensor_data(saved[0]));
    dnnl_memory_t mws = cpu_dnnl_call_memory(c, &p->workspace, tensor_data(saved[1]));
    dnnl_memory_t dy = cpu_dnnl_call_memory(c, &p->y, NULL);
    dnnl_memory_t dpooled = reordered(c, p->to_pooled, mgy, &p->pooled);
    if ((!p->own_pool && !my) || !mws || !dy || !dpooled) return NULL;
    if (p->own_pool) {
        const Window2d *w = &p->key.pool;
        if (cpu_dnnl_wait(c) != 0) return NULL;
        cpu_max_pool_2x2_blocked_backward(tensor_data(saved[0]), tensor_data(saved[1]),
                                          cpu_dnnl_data(dpooled), blocks_of(w), w->height,
                                          w->width, cpu_dnnl_data(dy));
        return dy;
    }
    dnnl_exec_arg_t pool[4] = {{DNNL_ARG_DIFF_DST, dpooled},
                               {DNNL_ARG_DIFF_SRC, dy},
                               {DNNL_ARG_WORKSPACE, mws},
                               {DNNL_ARG_SCRATCHPAD, msc}};
    dnnl_exec_arg_t relu[4] = {{DNNL_ARG_DST, my},
                               {DNNL_ARG_DIFF_DST, dy},
                               {DNNL_ARG_DIFF_SRC, dy},
                               {DNNL_ARG_SCRATCHPAD, msc}};
    if (cpu_dnnl_execute(p->pool_bwd, c->stream, 4, pool, "pooling") != 0 ||
        cpu_dnnl_execute(p->relu_bwd, c->stream, 4, relu, "eltwise") != 0)
        return NULL;
    return dy;
}

static int forward_call(const BlockPlan *p, const Tensor *x, const Tensor *weight,
                        const Tensor *bias, Tensor *out, Tensor **saved) {
    const dnnl_memory_desc_t *keep = p->own_pool ? &p->pooled : &p->y;
    /* out already in the pooled layout: the backward reads it (a view, so
     * the node does not hold its own output) */
    saved[0] = p->own_pool && !p->from_pooled
                   ? tensor_make_view(out, out->ndim, out->shape, out->strides, out->offset)
                   : tensor_empty(SHAPE((int64_t)dnnl_memory_desc_get_size(keep)), DTYPE_UINT8,
                                  x->device);
    saved[1] = tensor_empty(SHAPE((int64_t)dnnl_memory_desc_get_size(&p->workspace)), DTYPE_UINT8,
                            x->device);
    size_t bytes = bytes_of(&p->scratch_md) + (p->to_src ? bytes_of(&p->src) : 0) +
                   (p->to_weights ? bytes_of(&p->weights) : 0) +
                   (p->own_pool ? bytes_of(&p->y) : p->from_pooled ? bytes_of(&p->pooled) : 0);
    DnnlCall c = {0};
    int rc = saved[0] && saved[1] ? cpu_dnnl_call_open(&c, bytes) : -1;
    if (rc == 0) rc = forward_run(p, &c, x, weight, bias, out, saved[0], saved[1]);
    rc = cpu_dnnl_call_close(&c, rc);
    if (rc != 0) {
        tensor_release(saved[0]), tensor_release(saved[1]);
        saved[0] = saved[1] = NULL;
    }
    return rc;
}

/* A first block (no gx) of a 3x3 stride-1 float32 convolution over a
 * few channels (an image's: gray, RGB) whose own pool kept the argmax:
 * conv_block_wgrad.c sums its weight gradient from the windows' argmax,
 * with no dy and no oneDNN backward. Its sums cost about what oneDNN's
 * per input channel, so wider inputs keep oneDNN. */
static bool weight_grad_from_argmax(const BlockPlan *p, const Tensor *gx) {
    const Window2d *w = &p->key.conv;
    return !gx && p->own_pool && !p->key.x_blocked && p->in == dnnl_f32 && p->key.groups == 1 &&
           w->channels <= 4 &&
           w->kernel_h == 3 && w->kernel_w == 3 && w->stride_h == 1 && w->stride_w == 1 &&
           w->dilation_h == 1 && w->dilation_w == 1;
}

static int first_block_backward(const BlockPlan *p, const Tensor *x, Tensor *const *saved,
                                const Tensor *gy, Tensor *gw, Tensor *gb) {
    DnnlCall c;
    int rc = cpu_dnnl_call_open(&c, p->to_pooled ? bytes_of(&p->pooled) : 0);
    dnnl_memory_t mgy = rc == 0 ? cpu_dnnl_call_memory(&c, &p->out, tensor_data(gy)) : NULL;
    dnnl_memory_t g = reordered(&c, p->to_pooled, mgy, &p->pooled);
    if (rc == 0) rc = g ? cpu_dnnl_wait(&c) : -1;
    if (rc == 0)
        rc = cpu_conv_block_weight_grad(&p->key.conv, p->key.out_channels, tensor_data(x),
                                        tensor_data(saved[0]), tensor_data(saved[1]),
                                        cpu_dnnl_data(g), gw ? tensor_data(gw) : NULL,
                                        gb ? tensor_data(gb) : NULL);
    return cpu_dnnl_call_close(&c, rc);
}

static int backward_call(const BlockPlan *p, const Tensor *x, const Tensor *weight,
                         Tensor *const *saved, const Tensor *gy, Tensor *gx, Tensor *gw,
                         Tensor *gb) {
    if (weight_grad_from_argmax(p, gx)) return first_block_backward(p, x, saved, gy, gw, gb);
    bool weights = gw || gb;
    size_t bytes = bytes_of(&p->scratch_md) + bytes_of(&p->y) +
                   (p->to_pooled ? bytes_of(&p->pooled) : 0) +
                   (p->to_dy_in ? bytes_of(&p->dy_in) : 0);
    if (gx)
        bytes += (p->to_bd_weights ? bytes_of(&p->bd_weights) : 0) +
                 (p->from_bd_diff_src ? bytes_of(&p->bd_diff_src) : 0);
    if (weights)
        bytes += (p->to_bw_src ? bytes_of(&p->bw_src) : 0) + bytes_of(&p->bw_diff_weights) +
                 bytes_of(&p->w);
    DnnlCall c;
    int rc = cpu_dnnl_call_open(&c, bytes);
    dnnl_memory_t msc = rc == 0 ? cpu_dnnl_call_memory(&c, &p->scratch_md, NULL) : NULL;
    dnnl_memory_t dy = msc ? backward_to_y(p, &c, gy, saved, msc) : NULL;
    dy = reordered(&c, p->to_dy_in, dy, &p->dy_in);
    if (rc == 0 && !dy) rc = -1;
    if (rc == 0 && gx) {
        dnnl_memory_t mw = cpu_dnnl_call_memory(&c, &p->w, tensor_data(weight));
        rc = mw ? backward_data(p, &c, mw, dy, gx, msc) : -1;
    }
    if (rc == 0 && weights) {
        dnnl_memory_t mx = cpu_dnnl_call_memory(&c, &p->x, tensor_data(x));
        rc = mx ? backward_weights(p, &c, mx, dy, gw, gb, msc) : -1;
    }
    return cpu_dnnl_call_close(&c, rc);
}

int cpu_conv2d_relu_max_pool2d(const ConvReluPool *b, const Tensor *x, const Tensor *weight,
                               const Tensor *bias, Tensor *out, Tensor **saved) {
    if (!cpu_dnnl_takes(x)) return 1;
    bool owned;
    BlockPlan *p = plan_for(b, &owned);
    int rc = !p ? -1 : !p->made ? 1 : forward_call(p, x, weight, bias, out, saved);
    if (owned) plan_free(p);
    return rc;
}

int cpu_conv2d_relu_max_pool2d_backward(const ConvReluPool *b, const Tensor *x,
                                        const Tensor *weight, Tensor *const *saved,
                                        const Tensor *gy, Tensor *gx, Tensor *gw, Tensor *gb) {
    bool owned;
    BlockPlan *p = plan_for(b, &owned);
    int rc = !p         ? -1
             : !p->made ? error_set("conv2d: oneDNN refused the backward of its own forward")
                        : backward_call(p, x, weight, saved, gy, gx, gw, gb);
    if (owned) plan_free(p);
    return rc;
}

/* Whether b's plan, with its layouts, was made (oneDNN took every pass). */
static bool plan_made(const ConvReluPool *b) {
    bool owned;
    BlockPlan *p = plan_for(b, &owned);
    bool made = p && p->made;
    if (owned) plan_free(p);
    error_clear();
    return made;
}

/* nChw16c is as many bytes as NCHW where the channels fill whole blocks of
 * 16, so the tensor between the blocks keeps its shape. */
bool cpu_conv2d_relu_max_pool2d_chains(const ConvReluPool *from, const ConvReluPool *to,
                                       const Tensor *x) {
    if (!cpu_dnnl_takes(x) || from->pool.channels % 16 != 0) return false;
    ConvReluPool a = *from, b = *to;
    a.out_blocked = b.x_blocked = true;
    return plan_made(&a) && plan_made(&b);
}
