/* spec_gpt.c - "model": {"arch": "gpt", "vocab_size", "block_size",
 * "n_layer", "n_head", "n_embd", "dropout": 0, "bias": true}: nanoGPT's
 * GPTConfig, read into SpecGpt and checked on its own (n_embd a multiple of
 * n_head, a head no wider than the attention kernels take), and the size
 * of its model for a batch of token ids [B, T], from the config alone.
 */
#include "core/backend.h"
#include "core/error.h"
#include "core/spec_json.h"

#define GPT_MAX_SIZE ((int64_t)1 << 31)

static int check_dropout(double p) {
    if (p >= 0 && p < 1) return 0;
    return error_at("model.dropout", "must be in [0, 1), got %g", p);
}

int spec_gpt_parse(const json_t *model, const char *name, SpecArch *out) {
    SpecGpt *g = &out->gpt;
    (void)name;
    if (spec_get_int(model, "model", "vocab_size", true, 0, 1, GPT_MAX_SIZE, &g->vocab_size) ||
        spec_get_int(model, "model", "block_size", true, 0, 1, GPT_MAX_SIZE, &g->block_size) ||
        spec_get_int(model, "model", "n_layer", true, 0, 1, 100000, &g->n_layer) ||
        spec_get_int(model, "model", "n_head", true, 0, 1, GPT_MAX_SIZE, &g->n_head) ||
        spec_get_int(model, "model", "n_embd", true, 0, 1, GPT_MAX_SIZE, &g->n_embd) ||
        spec_get_number(model, "model", "dropout", false, 0, &g->dropout) ||
        spec_get_bool(model, "model", "bias", true, &g->bias) || check_dropout(g->dropout))
        return -1;
    if (g->n_embd % g->n_head != 0)
        return error_at("model.n_embd", "n_embd %lld must be a multiple of n_head %lld",
                        (long long)g->n_embd, (long long)g->n_head);
    if (g->n_embd / g->n_head > ATTENTION_MAX_HEAD_DIM)
        return error_at("model.n_head",
                        "the head size n_embd / n_head = %lld / %lld = %lld is above %d, the "
                        "most the attention kernels take",
                        (long long)g->n_embd, (long long)g->n_head,
                        (long long)(g->n_embd / g->n_head), ATTENTION_MAX_HEAD_DIM);
    return 0;
}

/* model.parameters() of nanoGPT's GPT: lm_head.weight is wte's, counted once. */
static int64_t gpt_parameters(const SpecGpt *g) {
    int64_t c = g->n_embd, nb = g->bias ? 1 : 0;
    int64_t ln = spec_sat_mul(c, 1 + nb);
    /* ln_1, ln_2; weights 3CC + CC + 8CC; biases 3C + C + 4C + C */
    int64_t layer = spec_sat_add(spec_sat_mul(2, ln), spec_sat_mul(12, spec_sat_mul(c, c)));
    layer = spec_sat_add(layer, spec_sat_mul(nb, 9 * c));
    int64_t emb = spec_sat_mul(spec_sat_add(g->vocab_size, g->block_size), c);
    return spec_sat_add(spec_sat_add(emb, spec_sat_mul(g->n_layer, layer)), ln);
}

int spec_gpt_size(const SpecArch *arch, DType dtype, int ndim, const int64_t *x,
                  SpecModelSize *size) {
    const SpecGpt *g = &arch->gpt;
    if (dtype != DTYPE_INT64)
        return error_set("GPT needs int64 token ids as its input, got %s", dtype_name(dtype));
    if (nn_gpt_shape(g->vocab_size, g->block_size, ndim, x, &size->out_ndim, size->out_shape))
        return -1;
    int64_t bt = spec_sat_mul(x[0], x[1]), btc = spec_sat_mul(bt, g->n_embd);
    /* what the backward keeps per block: the LayerNorms' and projections'
     * outputs, q, k, v and their copies, the attention's output and
     * logsumexp, the MLP's 4C-wide hidden layer before and after GELU */
    int64_t per_layer = spec_sat_add(spec_sat_mul(22, btc), spec_sat_mul(bt, g->n_head));
    int64_t acts = spec_sat_add(spec_sat_mul(g->n_layer, per_layer), spec_sat_mul(3, btc));
    size->activations = spec_sat_add(acts, spec_sat_mul(bt, g->vocab_size));
    size->parameters = gpt_parameters(g);
    size->buffers = 0;
    return 0;
}

Module *spec_gpt_build(const SpecArch *arch, Rng *rng) {
    const SpecGpt *g = &arch->gpt;
    return nn_gpt(g->vocab_size, g->block_size, g->n_layer, g->n_head, g->n_embd, g->dropout,
                  g->bias, rng);
}
