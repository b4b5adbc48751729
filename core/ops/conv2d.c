/* conv2d.c - 2-d convolution as im2col + GEMM, with its backward; groups
 * and dilation as torch's.
 *
 * With K = C*kh*kw and L = out_h*out_w, the images of a chunk of nb images
 * are unrolled side by side into one column matrix cols [K, nb*L], so each
 * step is one large GEMM per group (small per-image GEMMs leave OpenBLAS's
 * threads spinning). Group g owns input channels [g*C/G, (g+1)*C/G), hence
 * the rows [g*Kg, (g+1)*Kg) of cols (Kg = K/G), and output channels
 * [g*Og, (g+1)*Og), the rows of weight [O, C/G, kh, kw] = [O, Kg]:
 *   forward       Y_g [Og, nb*L] = weight_g [Og, Kg] @ cols_g (+ bias [O, 1] @ 1)
 *                 out[n] = Y[:, n*L : (n+1)*L]          (a permuting copy)
 *   weight grad   gW_g [Og, Kg] += gY_g [Og, nb*L] @ cols_g^T
 *   bias grad     gb [O]        += gY @ ones [nb*L]
 *   input grad    gx[n] = col2im((weight_g^T [Kg, Og] @ gY_g)[:, n*L : (n+1)*L])
 * where gY is gy permuted to [O, nb, L]. Chunks bound the scratch memory
 * (tensor_conv2d_set_scratch_bytes) whatever the batch size. Every step runs on the
 * backend's kernels, so on the tensor's device.
 *
 * A backend with a convolution library (the CPU's oneDNN) does a pass
 * whole through its conv2d entries instead, where it takes the case; the
 * im2col path is then what is left, as for float64. x and out in the
 * blocked layout (core/ops.h's TENSOR_BLOCK) go to the library alone;
 * where it leaves them, the convolution runs in NCHW between conversions.
 */
#include <stdatomic.h>
#include <stdio.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/ops/like_input.h"
#include "core/ops/window2d.h"

/* Column scratch per chunk; at least one image is always processed. */
static _Atomic int64_t scratch_bytes = (int64_t)32 << 20;

int64_t tensor_conv2d_set_scratch_bytes(int64_t bytes) {
    return atomic_exchange(&scratch_bytes, bytes);
}

/* Element `offset` of a contiguous tensor, as a raw (device) pointer. */
static void *elem_at(const Tensor *t, int64_t offset) {
    return (char *)tensor_data(t) + (size_t)offset * dtype_size(t->dtype);
}

/* Image n of a contiguous [N, ...] tensor. */
static void *image_at(const Tensor *t, int64_t n) {
    return elem_at(t, n * t->shape[1] * t->shape[2] * t->shape[3]);
}

static int64_t chunk_images(const Window2d *g, int64_t K, DType dt) {
    int64_t per = K * g->out_h * g->out_w * (int64_t)dtype_size(dt);
    int64_t nb = per > 0 ? atomic_load(&scratch_bytes) / per : g->batch;
    if (nb < 1) nb = 1;
    return nb < g->batch ? nb : g->batch;
}

/* Copies between a chunk of a [N, O, L] tensor and its [O, nb, L] matrix
 * form (to_matrix: tensor -> matrix). */
static void permute_chunk(const Backend *be, Tensor *nol, int64_t n0, Tensor *onl, bool to_matrix) {
    int64_t nb = onl->shape[1], O = onl->shape[0], L = onl->shape[2];
    Tensor *a = tensor_make_view(nol, SHAPE(nb, O, L), (int64_t[]){O * L, L, 1},
                                 nol->offset + n0 * O * L);
    Tensor *b = tensor_make_view(onl, SHAPE(nb, O, L), (int64_t[]){L, nb * L, 1}, onl->offset);
    if (a && b) be->copy(to_matrix ? a : b, to_matrix ? b : a);
    tensor_release(a);
    tensor_release(b);
}

int conv2d_window(const Tensor *x, const Tensor *weight, const Tensor *bias,
                  const Conv2dParams *p, Window2d *g) {
    char sw[128], sb[128];
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    if (tensor_nchw_shape("conv2d", x, &ndim, shape) != 0) return -1;
    if (!dtype_is_float(x->dtype))
        return error_set("conv2d: expected a float input, got %s", dtype_name(x->dtype));
    if (ops_check_like_input("conv2d", "weight", weight, x) ||
        (bias && ops_check_like_input("conv2d", "bias", bias, x)))
        return -1;
    if (weight->ndim != 4)
        return error_set("conv2d: weight must be 4-d [out_channels, in_channels, kh, kw], got %s",
                         tensor_shape_str(weight, sw, sizeof sw));
    for (int i = 0; i < 4; i++)
        if (weight->shape[i] < 1)
            return error_set("conv2d: weight %s has an empty dimension",
                             tensor_shape_str(weight, sw, sizeof sw));
    if (p->groups < 1 || weight->shape[0] % p->groups != 0)
        return error_set("conv2d: groups=%d must be positive and divide the %lld output "
                         "channels", p->groups, (long long)weight->shape[0]);
    if (ndim == 4 && shape[1] != weight->shape[1] * p->groups) {
        char gs[32] = "";
        if (p->groups > 1) snprintf(gs, sizeof gs, ", groups=%d", p->groups);
        return error_set("conv2d: input has %lld channels but weight expects %lld (%s%s)",
                         (long long)shape[1], (long long)(weight->shape[1] * p->groups),
                         tensor_shape_str(weight, sw, sizeof sw), gs);
    }
    if (bias && (bias->ndim != 1 || bias->shape[0] != weight->shape[0]))
        return error_set("conv2d: bias has shape %s but weight %s needs [%lld]",
                         tensor_shape_str(bias, sb, sizeof sb),
                         tensor_shape_str(weight, sw, sizeof sw), (long long)weight->shape[0]);
    if (weight->shape[2] > INT32_MAX || weight->shape[3] > INT32_MAX)
        return error_set("conv2d: weight %s is too large", tensor_shape_str(weight, sw, sizeof sw));
    return window2d_init_dilated("conv2d", ndim, shape, (int)weight->shape[2],
                                 (int)weight->shape[3], p->stride_h, p->stride_w, p->pad_h,
                                 p->pad_w, p->dilation_h, p->dilation_w, g);
}

/* *out made, in the blocked layout (core/ops.h's TENSOR_BLOCK) where
 * out_blocked, and the pass offered to the backend's library: 0 done, 1
 * left to the caller (*out made, not filled), -1 with an error (*out
 * NULL). */
static int library_forward(const Backend *be, const Window2d *g, int groups, const Tensor *x,
                           const Tensor *weight, const Tensor *bias, bool out_blocked,
                           Tensor **out) {
    int64_t O = weight->shape[0];
    *out = out_blocked ? tensor_empty(SHAPE(g->batch, O / TENSOR_BLOCK, g->out_h, g->out_w,
                                            TENSOR_BLOCK),
                                      x->dtype, x->device)
                       : tensor_empty(SHAPE(g->batch, O, g->out_h, g->out_w), x->dtype, x->device);
    if (!*out) return -1;
    int rc = be->conv2d ? be->conv2d(g, groups, x, weight, bias, *out) : 1;
    if (rc < 0) {
        tensor_release(*out);
        *out = NULL;
    }
    return rc;
}

/* out = conv(x, weight) + bias on contiguous operands; no autograd. When
 * keep_cols is given and the whole batch fit in one chunk, the column
 * matrix is handed back there, so backward need not unroll x again. */
static Tensor *conv2d_forward(const Backend *be, const Window2d *g, int groups, const Tensor *x,
                              const Tensor *weight, const Tensor *bias, Tensor **keep_cols) {
    DType dt = x->dtype;
    int64_t O = weight->shape[0], K = g->channels * g->kernel_h * g->kernel_w;
    int64_t Og = O / groups, Kg = K / groups;
    int64_t L = g->out_h * g->out_w, nb = chunk_images(g, K, dt);
    Tensor *out;
    if (library_forward(be, g, groups, x, weight, bias, false, &out) <= 0) return out;
    Tensor *cols = tensor_empty(SHAPE(K, nb * L), dt, x->device);
    Tensor *y = tensor_empty(SHAPE(O, nb, L), dt, x->device);
    Tensor *ones = bias ? tensor_full(SHAPE(nb * L), 1.0, dt, x->device) : NULL;
    bool ok = out && cols && y && (!bias || ones);
    for (int64_t n0 = 0; ok && n0 < g->batch; n0 += nb) {
        int64_t m = g->batch - n0 < nb ? g->batch - n0 : nb;
        /* a short last chunk uses the first m*L columns: ld stays m*L */
        be->im2col(dt, g, image_at(x, n0), m, tensor_data(cols), m * L);
        for (int gi = 0; gi < groups; gi++)
            be->gemm(dt, false, false, Og, m * L, Kg, 1.0, elem_at(weight, gi * Og * Kg), Kg,
                     elem_at(cols, gi * Kg * m * L), m * L, 0.0, elem_at(y, gi * Og * m * L),
                     m * L);
        if (bias) /* Y += bias [O, 1] @ ones [1, m*L] */
            be->gemm(dt, false, false, O, m * L, 1, 1.0, tensor_data(bias), 1, tensor_data(ones),
                     m * L, 1.0, tensor_data(y), m * L);
        Tensor *ym = tensor_make_view(y, SHAPE(O, m, L), (int64_t[]){m * L, L, 1}, 0);
        ok = ym != NULL;
        if (ok) permute_chunk(be, out, n0, ym, false);
        tensor_release(ym);
    }
    if (ok && keep_cols && nb == g->batch) *keep_cols = tensor_retain(cols);
    tensor_release(cols);
    tensor_release(y);
    tensor_release(ones);
    if (!ok) {
        tensor_release(out);
        return NULL;
    }
    return out;
}

/* The passes the backend's library takes (conv2d_backward_data and
 * _weights); each one done clears its need_ flag. The bias gradient goes
 * with the weight pass, or to im2col when only it is needed. */
static int conv2d_backward_library(const Backend *be, const Window2d *g, int groups,
                                   const Tensor *x, const Tensor *gy, const Tensor *weight,
                                   Tensor *gi, Tensor *gw, Tensor *gb, bool *need_x,
                                   bool *need_w, bool *need_b) {
    int rc = *need_x && be->conv2d_backward_data
                 ? be->conv2d_backward_data(g, groups, weight, gy, gi)
                 : 1;
    if (rc < 0) return -1;
    if (rc == 0) *need_x = false;
    rc = *need_w && be->conv2d_backward_weights
             ? be->conv2d_backward_weights(g, groups, x, gy, gw, *need_b ? gb : NULL)
             : 1;
    if (rc < 0) return -1;
    if (rc == 0) *need_w = *need_b = false;
    return 0;
}

/* The rest on im2col + GEMM, chunk by chunk: gi, gw and gb each NULL when
 * not wanted (gw and gb zeroed, gi overwritten). saved_cols: im2col(x) of
 * the whole batch from the forward, or NULL. */
static int conv2d_backward_im2col(const Backend *be, const Window2d *g, int groups,
                                  const Tensor *saved_cols, const Tensor *x, const Tensor *gyc,
                                  const Tensor *weight, Tensor *gi, Tensor *gw, Tensor *gb) {
    if (!gi && !gw && !gb) return 0;
    DType dt = x->dtype;
    int64_t O = weight->shape[0], K = g->channels * g->kernel_h * g->kernel_w;
    int64_t Og = O / groups, Kg = K / groups;
    int64_t L = g->out_h * g->out_w, nb = chunk_images(g, K, dt);
    bool need_cols = gi || (gw && !saved_cols);
    Tensor *cols = need_cols ? tensor_empty(SHAPE(K, nb * L), dt, x->device) : NULL;
    Tensor *gyo = tensor_empty(SHAPE(O, nb, L), dt, x->device);
    Tensor *ones = gb ? tensor_full(SHAPE(nb * L), 1.0, dt, x->device) : NULL;
    bool ok = (!need_cols || cols) && gyo && (!gb || ones);
    for (int64_t n0 = 0; ok && n0 < g->batch; n0 += nb) {
        int64_t m = g->batch - n0 < nb ? g->batch - n0 : nb;
        Tensor *gym = tensor_make_view(gyo, SHAPE(O, m, L), (int64_t[]){m * L, L, 1}, 0);
        if (!(ok = gym != NULL)) break;
        permute_chunk(be, (Tensor *)gyc, n0, gym, true);
        tensor_release(gym);
        const void *gY = tensor_data(gyo); /* [O, m*L] */
        if (gb)
            be->gemm(dt, false, false, O, 1, m * L, 1.0, gY, m * L, tensor_data(ones), 1, 1.0,
                     tensor_data(gb), 1);
        if (gw) {
            const Tensor *xcols = saved_cols ? saved_cols : cols;
            if (!saved_cols) be->im2col(dt, g, image_at(x, n0), m, tensor_data(cols), m * L);
            for (int gr = 0; gr < groups; gr++)
                be->gemm(dt, false, true, Og, Kg, m * L, 1.0, elem_at(gyo, gr * Og * m * L), m * L,
                         elem_at(xcols, gr * Kg * m * L), m * L, 1.0, elem_at(gw, gr * Og * Kg),
                         Kg);
        }
        if (gi) {
            for (int gr = 0; gr < groups; gr++)
                be->gemm(dt, true, false, Kg, m * L, Og, 1.0, elem_at(weight, gr * Og * Kg), Kg,
                         elem_at(gyo, gr * Og * m * L), m * L, 0.0,
                         elem_at(cols, gr * Kg * m * L), m * L);
            be->col2im(dt, g, tensor_data(cols), m * L, m, image_at(gi, n0));
        }
    }
    tensor_release(cols);
    tensor_release(gyo);
    tensor_release(ones);
    return ok ? 0 : -1;
}

/* ints: stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups.
 * inputs: x, weight[, bias], all contiguous (the op recorded its contiguous
 * copies). saved[0]: the forward's column matrix of the whole batch, when
 * it kept one. */
static int conv2d_backward(AutogradNode *node, Tensor *gy, Tensor **gx) {
    Tensor *x = node->inputs[0], *weight = node->inputs[1];
    Tensor *bias = node->n_inputs > 2 ? node->inputs[2] : NULL;
    const int64_t *p = node->ints;
    int groups = (int)p[6];
    Window2d g;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    if (tensor_nchw_shape("conv2d backward", x, &ndim, shape) != 0 ||
        window2d_init_dilated("conv2d backward", ndim, shape, (int)weight->shape[2],
                              (int)weight->shape[3], (int)p[0], (int)p[1], (int)p[2], (int)p[3],
                              (int)p[4], (int)p[5], &g) != 0)
        return -1;
    const Backend *be = backend_for(x->device);
    if (!be) return -1;
    bool need_x = x->requires_grad, need_w = weight->requires_grad;
    bool need_b = bias && bias->requires_grad;
    Tensor *gyc = tensor_contiguous(gy);
    Tensor *gi = need_x ? tensor_empty_like(x) : NULL;
    Tensor *gw = need_w ? tensor_zeros_like(weight) : NULL;
    Tensor *gb = need_b ? tensor_zeros_like(bias) : NULL;
    int rc = gyc && (!need_x || gi) && (!need_w || gw) && (!need_b || gb) ? 0 : -1;
    if (rc == 0)
        rc = conv2d_backward_library(be, &g, groups, x, gyc, weight, gi, gw, gb, &need_x,
                                     &need_w, &need_b);
    if (rc == 0 && (x->ndim == 5 || gy->ndim == 5) && (need_x || need_w || need_b))
        rc = error_set("conv2d backward: the convolution library left a pass over the blocked "
                       "layout to im2col, which reads NCHW (was it switched off after the "
                       "forward?)");
    if (rc == 0)
        rc = conv2d_backward_im2col(be, &g, groups, node->saved[0], x, gyc, weight,
                                    need_x ? gi : NULL, need_w ? gw : NULL, need_b ? gb : NULL);
    tensor_release(gyc);
    if (rc != 0) {
        tensor_release(gw);
        tensor_release(gb);
        tensor_release(gi);
        return -1;
    }
    gx[0] = gi;
    gx[1] = gw;
    if (bias) gx[2] = gb;
    return 0;
}

Tensor *tensor_conv2d(Tensor *x, Tensor *weight, Tensor *bias, int stride_h, int stride_w,
                      int pad_h, int pad_w) {
    Conv2dParams p = {stride_h, stride_w, pad_h, pad_w, 1, 1, 1};
    return tensor_conv2d_with(x, weight, bias, &p);
}

/* The convolution in NCHW between conversions, differentiated through
 * them: the blocked layout where the backend does not run it. */
static Tensor *through_nchw(Tensor *x, Tensor *weight, Tensor *bias, const Conv2dParams *p,
                            bool out_blocked) {
    Tensor *xn = x->ndim == 5 ? tensor_from_blocked(x) : tensor_retain(x);
    Tensor *y = xn ? tensor_conv2d_layout(xn, weight, bias, p, false) : NULL;
    Tensor *out = y && out_blocked ? tensor_to_blocked(y) : tensor_retain(y);
    tensor_release(xn), tensor_release(y);
    return out;
}

/* Whether the blocked layout runs as the convolution's own passes: on a
 * backend that takes it, and with the bias gradient (which the library
 * computes in its weight pass) wanted only beside the weight's. */
static bool blocked_natively(const Tensor *x, const Tensor *weight, const Tensor *bias) {
    bool bias_alone = bias && bias->requires_grad && !weight->requires_grad &&
                      autograd_is_enabled();
    return tensor_blocked_layout_native(x) && !bias_alone;
}

Tensor *tensor_conv2d_with(Tensor *x, Tensor *weight, Tensor *bias, const Conv2dParams *p) {
    return tensor_conv2d_layout(x, weight, bias, p, false);
}

/* Records the op on out (released on failure); the node takes cols, the
 * forward's column matrix, or NULL. */
static Tensor *record_conv(Tensor *out, Tensor **inputs, int n_inputs, const Conv2dParams *p,
                           Tensor *cols) {
    AutogradNode *node =
        autograd_record(out, "ConvolutionBackward", conv2d_backward, n_inputs, inputs);
    if (!node) {
        tensor_release(out), tensor_release(cols);
        return NULL;
    }
    const int ints[7] = {p->stride_h,   p->stride_w,   p->pad_h, p->pad_w,
                         p->dilation_h, p->dilation_w, p->groups};
    for (int i = 0; i < 7; i++) node->ints[i] = ints[i];
    node->saved[0] = cols;
    return out;
}

/* The op on contiguous copies of its inputs, recorded; NULL with *left
 * where the backend left a case in the blocked layout to NCHW. */
static Tensor *conv2d_run(const Backend *be, const Window2d *g, Tensor *x, Tensor *weight,
                          Tensor *bias, const Conv2dParams *p, bool out_blocked, bool *left) {
    Tensor *xc = tensor_contiguous(x), *wc = tensor_contiguous(weight);
    Tensor *bc = bias ? tensor_contiguous(bias) : NULL;
    Tensor *inputs[3] = {xc, wc, bc}, *out = NULL, *cols = NULL;
    int n_inputs = bias ? 3 : 2;
    bool record = autograd_needs_grad(n_inputs, inputs), blocked = x->ndim == 5 || out_blocked;
    /* the weight's gradient reads im2col(x): keep it rather than redo it */
    bool keep = record && !blocked && wc && wc->requires_grad;
    bool ready = xc && wc && (!bias || bc);
    if (ready && blocked && library_forward(be, g, p->groups, xc, wc, bc, out_blocked, &out) == 1) {
        tensor_release(out); /* the library left the layout: through NCHW */
        out = NULL;
        *left = true;
    } else if (ready && !blocked) {
        out = conv2d_forward(be, g, p->groups, xc, wc, bc, keep ? &cols : NULL);
    }
    if (out && record)
        out = record_conv(out, inputs, n_inputs, p, cols);
    else
        tensor_release(cols);
    tensor_release(xc), tensor_release(wc), tensor_release(bc);
    return out;
}

Tensor *tensor_conv2d_layout(Tensor *x, Tensor *weight, Tensor *bias, const Conv2dParams *p,
                             bool out_blocked) {
    if (!x || !weight) return NULL;
    Window2d g;
    if (conv2d_window(x, weight, bias, p, &g) != 0) return NULL;
    if (out_blocked && weight->shape[0] % TENSOR_BLOCK != 0)
        return error_set("conv2d: %lld output channels do not fill blocks of %d for the blocked "
                         "layout",
                         (long long)weight->shape[0], TENSOR_BLOCK),
               NULL;
    const Backend *be = backend_for(x->device);
    if (!be) return NULL;
    bool left = (x->ndim == 5 || out_blocked) && !blocked_natively(x, weight, bias);
    Tensor *out = left ? NULL : conv2d_run(be, &g, x, weight, bias, p, out_blocked, &left);
    return left ? through_nchw(x, weight, bias, p, out_blocked) : out;
}
