/* gpt.c - GPT as nanoGPT's model.py writes it (GPT-2's design): learned
 * token and position embeddings, n_layer pre-LayerNorm blocks of causal
 * self-attention and a GELU MLP, a final LayerNorm, and an output layer
 * whose weight is the token embedding's (weight tying).
 *
 * The module tree mirrors nanoGPT's attributes, so the state_dict keys are
 * its keys: transformer.wte / wpe (Embedding), transformer.drop (Dropout),
 * transformer.h.N (Block: ln_1, attn.{c_attn, c_proj}, ln_2,
 * mlp.{c_fc, gelu, c_proj}), transformer.ln_f, lm_head (Linear, no bias;
 * lm_head.weight is transformer.wte.weight, one tensor). Containers without
 * a forward of their own (transformer, a ModuleDict; h, a ModuleList) only
 * hold names.
 *
 * dropout, as nanoGPT's: on the embeddings' sum (transformer.drop), on
 * the attention probabilities (inside the fused attention, which has no
 * module of its own), and on each residual branch (attn.resid_dropout,
 * mlp.dropout); all draw from the model's stream (module_set_rng).
 *
 * Initialisation is nanoGPT's _init_weights: Linear and Embedding weights
 * normal(0, 0.02), biases zero, LayerNorm weight one and bias zero, then
 * every c_proj.weight normal(0, 0.02 / sqrt(2 n_layer)).
 */
#include <math.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"

#define GPT_INIT_STD 0.02
#define GPT_LN_EPS 1e-5 /* F.layer_norm's default, which nanoGPT's LayerNorm uses */

typedef struct {
    Module base;
    int64_t n_head, n_embd;
    double p; /* attn_dropout's and resid_dropout's */
    Module *c_attn, *c_proj, *resid_dropout;
} CausalSelfAttention;

typedef struct {
    Module base;
    double p; /* dropout's */
    Module *c_fc, *gelu, *c_proj, *dropout;
} Mlp;

typedef struct {
    Module base;
    Module *ln_1, *attn, *ln_2, *mlp;
} Block;

typedef struct {
    Module base;
    int64_t block_size, n_layer;
    double dropout;
    Module *wte, *wpe, *drop, *h, *ln_f, *lm_head;
    Tensor *positions; /* the first forward's 0 .. T-1, kept for later ones */
} Gpt;

/* ---- helpers ---- */

/* nanoGPT's dropout modules at p = 0 are the identity in training too; the
 * forward skips them then (no mask, no copy). */
static Tensor *dropout_release(Module *drop, double p, Tensor *x) {
    return p > 0 ? module_forward_consume(drop, x) : x;
}

/* Adds child `m` under `name` and returns it (NULL on failure; the parent
 * owns it either way). */
static Module *child(Module *parent, const char *name, Module *m) {
    return module_add_child(parent, name, m) == 0 ? m : NULL;
}

static Module *linear_init(int64_t in, int64_t out, bool bias, double std, Rng *rng) {
    Module *m = nn_linear(in, out, bias, rng);
    if (!m) return NULL;
    Tensor *b = module_get(m, "bias");
    if (nn_init_normal_(module_get(m, "weight"), 0, std, rng) != 0 ||
        (b && tensor_fill_(b, 0) != 0)) {
        module_free(m);
        return NULL;
    }
    return m;
}

static Module *layer_norm(int64_t n, bool bias) {
    return nn_layer_norm(1, &n, GPT_LN_EPS, true, bias);
}

static int not_callable(Module *m) {
    return error_set("%s holds modules by name and has no forward", module_type(m));
}

static Tensor *holder_forward(Module *m, Tensor *x) {
    (void)x;
    not_callable(m);
    return NULL;
}

static int holder_infer(Module *m, int ndim, const int64_t *in, int *out_ndim, int64_t *out) {
    return not_callable(m);
}

static const ModuleVTable module_dict_vtable = {
    .type = "ModuleDict",
    .forward = holder_forward,
    .infer_shape = holder_infer,
};
static const ModuleVTable module_list_vtable = {
    .type = "ModuleList",
    .forward = holder_forward,
    .infer_shape = holder_infer,
};

/* ---- CausalSelfAttention ---- */

/* Part `i` (q, k, v) of qkv [B, T, 3C] as [B, n_head, T, C / n_head]. */
static Tensor *head_split(Tensor *qkv, int i, int64_t n_head) {
    int64_t b = qkv->shape[0], t = qkv->shape[1], c = qkv->shape[2] / 3;
    Tensor *part = tensor_narrow(qkv, 2, i * c, c);
    Tensor *v = part ? tensor_reshape(part, SHAPE(b, t, n_head, c / n_head)) : NULL;
    Tensor *h = v ? tensor_transpose(v, 1, 2) : NULL;
    tensor_release(part), tensor_release(v);
    return h;
}

/* The fused causal attention with nanoGPT's attn_dropout (p, in training):
 * its mask takes B H T T numbers of the model's stream, as a Dropout over
 * the probabilities would. */
static Tensor *attention(Module *m, double p, Tensor *q, Tensor *k, Tensor *v) {
    if (!m->training || p == 0) return tensor_causal_attention(q, k, v);
    int64_t per_sample = q->shape[1] * q->shape[2] * q->shape[2];
    ModuleStream st;
    if (module_draw_stream(m, q->shape[0], per_sample, &st) != 0) {
        error_prefix("the attention's dropout mask");
        return NULL;
    }
    uint64_t stride = st.row_stride == (uint64_t)per_sample ? 0 : st.row_stride;
    return tensor_causal_attention_dropout(q, k, v, p, st.seed, st.offset, stride, st.base);
}

static Tensor *attn_forward(Module *m, Tensor *x) {
    CausalSelfAttention *a = (CausalSelfAttention *)m;
    Tensor *qkv = module_forward(a->c_attn, x);
    Tensor *q = qkv ? head_split(qkv, 0, a->n_head) : NULL;
    Tensor *k = q ? head_split(qkv, 1, a->n_head) : NULL;
    Tensor *v = k ? head_split(qkv, 2, a->n_head) : NULL;
    Tensor *y = v ? attention(m, a->p, q, k, v) : NULL;
    tensor_release(qkv), tensor_release(q), tensor_release(k), tensor_release(v);
    Tensor *yt = y ? tensor_transpose(y, 1, 2) : NULL; /* [B, T, n_head, hs] */
    tensor_release(y);
    Tensor *merged = yt ? tensor_reshape(yt, SHAPE(x->shape[0], x->shape[1], a->n_embd)) : NULL;
    tensor_release(yt);
    return dropout_release(a->resid_dropout, a->p, module_forward_consume(a->c_proj, merged));
}

static const ModuleVTable attn_vtable = {
    .type = "CausalSelfAttention",
    .forward = attn_forward,
    .infer_shape = module_infer_same_shape,
};

static Module *attn_new(int64_t n_embd, int64_t n_head, int64_t n_layer, bool bias, double p,
                        Rng *rng) {
    CausalSelfAttention *a = (CausalSelfAttention *)module_alloc(sizeof *a, &attn_vtable);
    if (!a) return NULL;
    Module *m = &a->base;
    a->n_head = n_head;
    a->n_embd = n_embd;
    a->p = p;
    a->c_attn = child(m, "c_attn", linear_init(n_embd, 3 * n_embd, bias, GPT_INIT_STD, rng));
    a->c_proj = a->c_attn ? child(m, "c_proj", linear_init(n_embd, n_embd, bias,
                                                           GPT_INIT_STD / sqrt(2.0 * n_layer),
                                                           rng))
                          : NULL;
    a->resid_dropout = a->c_proj ? child(m, "resid_dropout", nn_dropout(p)) : NULL;
    if (!a->resid_dropout) {
        module_free(m);
        return NULL;
    }
    return m;
}

/* ---- MLP ---- */

static Tensor *mlp_forward(Module *m, Tensor *x) {
    Mlp *p = (Mlp *)m;
    Tensor *h = module_forward_consume(p->gelu, module_forward(p->c_fc, x));
    return dropout_release(p->dropout, p->p, module_forward_consume(p->c_proj, h));
}

static const ModuleVTable mlp_vtable = {
    .type = "MLP",
    .forward = mlp_forward,
    .infer_shape = module_infer_same_shape,
};

static Module *mlp_new(int64_t n_embd, int64_t n_layer, bool bias, double p, Rng *rng) {
    Mlp *f = (Mlp *)module_alloc(sizeof *f, &mlp_vtable);
    if (!f) return NULL;
    Module *m = &f->base;
    f->p = p;
    f->c_fc = child(m, "c_fc", linear_init(n_embd, 4 * n_embd, bias, GPT_INIT_STD, rng));
    f->gelu = f->c_fc ? child(m, "gelu", nn_gelu(false)) : NULL;
    f->c_proj = f->gelu ? child(m, "c_proj", linear_init(4 * n_embd, n_embd, bias,
                                                         GPT_INIT_STD / sqrt(2.0 * n_layer),
                                                         rng))
                        : NULL;
    f->dropout = f->c_proj ? child(m, "dropout", nn_dropout(p)) : NULL;
    if (!f->dropout) {
        module_free(m);
        return NULL;
    }
    return m;
}

/* ---- Block ---- */

/* x + attn(ln_1(x)), then x + mlp(ln_2(x)). */
static Tensor *block_forward(Module *m, Tensor *x) {
    Block *b = (Block *)m;
    Tensor *a = module_forward_consume(b->attn, module_forward(b->ln_1, x));
    Tensor *x1 = tensor_add_consume(tensor_retain(x), a);
    if (!x1) return NULL;
    return tensor_add_consume(x1, module_forward_consume(b->mlp, module_forward(b->ln_2, x1)));
}

static const ModuleVTable block_vtable = {
    .type = "Block",
    .forward = block_forward,
    .infer_shape = module_infer_same_shape,
};

static Module *block_new(int64_t n_embd, int64_t n_head, int64_t n_layer, bool bias, double p,
                         Rng *rng) {
    Block *b = (Block *)module_alloc(sizeof *b, &block_vtable);
    if (!b) return NULL;
    Module *m = &b->base;
    b->ln_1 = child(m, "ln_1", layer_norm(n_embd, bias));
    b->attn = b->ln_1 ? child(m, "attn", attn_new(n_embd, n_head, n_layer, bias, p, rng)) : NULL;
    b->ln_2 = b->attn ? child(m, "ln_2", layer_norm(n_embd, bias)) : NULL;
    b->mlp = b->ln_2 ? child(m, "mlp", mlp_new(n_embd, n_layer, bias, p, rng)) : NULL;
    if (!b->mlp) {
        module_free(m);
        return NULL;
    }
    return m;
}

/* ---- GPT ---- */

int nn_gpt_shape(int64_t vocab_size, int64_t block_size, int ndim, const int64_t *in,
                 int *out_ndim, int64_t *out) {
    char s[128];
    if (ndim != 2)
        return error_set("GPT: expected token ids [B, T], got %s",
                         shape_str(ndim, in, s, sizeof s));
    if (in[1] > block_size)
        return error_set("GPT: sequence length T=%lld exceeds block_size %lld", (long long)in[1],
                         (long long)block_size);
    out[0] = in[0], out[1] = in[1], out[2] = vocab_size;
    *out_ndim = 3;
    return 0;
}

static int gpt_infer(Module *m, int ndim, const int64_t *in, int *out_ndim, int64_t *out) {
    const Gpt *g = (const Gpt *)m;
    return nn_gpt_shape(module_get(g->wte, "weight")->shape[0], g->block_size, ndim, in,
                        out_ndim, out);
}

/* positions 0 .. t-1 as int64 [t] on `device`. The first forward's are
 * kept for the module's life, so that its steps upload nothing (a GPU then
 * need not wait for the host, and a CUDA graph can hold the step, whose
 * replays read them); another length or device gets its own. */
static Tensor *positions(Gpt *g, int64_t t, Device device) {
    Tensor *c = g->positions;
    if (c && c->shape[0] == t && device_equal(c->device, device)) return tensor_retain(c);
    Tensor *pos = tensor_empty(SHAPE(t), DTYPE_INT64, DEVICE_CPU_INIT);
    if (!pos) return NULL;
    int64_t *p = tensor_data(pos);
    for (int64_t i = 0; i < t; i++) p[i] = i;
    Tensor *moved = device.type == DEVICE_CPU ? tensor_retain(pos) : tensor_to_device(pos, device);
    tensor_release(pos);
    if (moved && !c) g->positions = tensor_retain(moved);
    return moved;
}

static void gpt_free(Module *m) { tensor_release(((Gpt *)m)->positions); }

static Tensor *gpt_forward(Module *m, Tensor *idx) {
    Gpt *g = (Gpt *)m;
    int on;
    int64_t out[TENSOR_MAX_DIMS];
    if (gpt_infer(m, idx->ndim, idx->shape, &on, out) != 0) return NULL;
    if (idx->dtype != DTYPE_INT64) {
        error_set("GPT: expected int64 token ids, got %s", dtype_name(idx->dtype));
        return NULL;
    }
    Tensor *tok = module_forward(g->wte, idx);                  /* [B, T, C] */
    Tensor *pos = tok ? positions(g, idx->shape[1], idx->device) : NULL;
    Tensor *x = tensor_add_consume(tok, module_forward_consume(g->wpe, pos)); /* + [T, C] */
    x = dropout_release(g->drop, g->dropout, x);
    for (int i = 0; x && i < g->h->n_children; i++)
        x = module_forward_consume(g->h->children[i], x);
    return module_forward_consume(g->lm_head, module_forward_consume(g->ln_f, x));
}

static const ModuleVTable gpt_vtable = {
    .type = "GPT",
    .forward = gpt_forward,
    .infer_shape = gpt_infer,
    .free = gpt_free,
};

/* lm_head.weight becomes transformer.wte.weight: one tensor, two names. */
static void tie(Module *lm_head, Module *wte) {
    NamedTensor *slot = &lm_head->params[0];
    tensor_release(slot->tensor);
    slot->tensor = tensor_retain(module_get(wte, "weight"));
}

static Module *transformer_new(Gpt *g, int64_t vocab, int64_t n_layer, int64_t n_head,
                               int64_t n_embd, bool bias, double p, Rng *rng) {
    Module *t = module_alloc(sizeof *t, &module_dict_vtable);
    if (!t) return NULL;
    g->wte = child(t, "wte", nn_embedding(vocab, n_embd, rng));
    g->wpe = g->wte ? child(t, "wpe", nn_embedding(g->block_size, n_embd, rng)) : NULL;
    g->drop = g->wpe ? child(t, "drop", nn_dropout(p)) : NULL;
    g->h = g->drop ? child(t, "h", module_alloc(sizeof *g->h, &module_list_vtable)) : NULL;
    for (int64_t i = 0; g->h && i < n_layer; i++)
        if (module_add_child(g->h, NULL, block_new(n_embd, n_head, n_layer, bias, p, rng)) != 0)
            g->h = NULL;
    g->ln_f = g->h ? child(t, "ln_f", layer_norm(n_embd, bias)) : NULL;
    if (!g->ln_f ||
        nn_init_normal_(module_get(g->wte, "weight"), 0, GPT_INIT_STD, rng) != 0 ||
        nn_init_normal_(module_get(g->wpe, "weight"), 0, GPT_INIT_STD, rng) != 0) {
        module_free(t);
        return NULL;
    }
    return t;
}

static int check_config(int64_t vocab, int64_t block, int64_t n_layer, int64_t n_head,
                        int64_t n_embd, double dropout) {
    if (vocab <= 0 || block <= 0 || n_layer <= 0 || n_head <= 0 || n_embd <= 0)
        return error_set("GPT: vocab_size, block_size, n_layer, n_head and n_embd must be "
                         "positive, got %lld, %lld, %lld, %lld, %lld",
                         (long long)vocab, (long long)block, (long long)n_layer,
                         (long long)n_head, (long long)n_embd);
    if (n_embd % n_head != 0)
        return error_set("GPT: n_embd %lld is not a multiple of n_head %lld", (long long)n_embd,
                         (long long)n_head);
    if (n_embd / n_head > ATTENTION_MAX_HEAD_DIM)
        return error_set("GPT: head size n_embd / n_head = %lld, at most %d",
                         (long long)(n_embd / n_head), ATTENTION_MAX_HEAD_DIM);
    if (!(dropout >= 0 && dropout < 1))
        return error_set("GPT: dropout must be in [0, 1), got %g", dropout);
    return 0;
}

Module *nn_gpt(int64_t vocab_size, int64_t block_size, int64_t n_layer, int64_t n_head,
               int64_t n_embd, double dropout, bool bias, Rng *rng) {
    if (check_config(vocab_size, block_size, n_layer, n_head, n_embd, dropout)) return NULL;
    if (!rng) return error_set("GPT: no Rng to initialise the weights from"), NULL;
    Gpt *g = (Gpt *)module_alloc(sizeof *g, &gpt_vtable);
    if (!g) return NULL;
    Module *m = &g->base;
    g->block_size = block_size;
    g->n_layer = n_layer;
    g->dropout = dropout;
    Module *t = child(m, "transformer",
                      transformer_new(g, vocab_size, n_layer, n_head, n_embd, bias, dropout, rng));
    g->lm_head = t ? child(m, "lm_head", nn_linear(n_embd, vocab_size, false, rng)) : NULL;
    if (!g->lm_head) {
        module_free(m);
        return NULL;
    }
    tie(g->lm_head, g->wte);
    return m;
}
