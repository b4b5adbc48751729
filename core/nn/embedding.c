/* embedding.c - nn.Embedding(num_embeddings, embedding_dim): a lookup table
 * weight [num_embeddings, embedding_dim] whose rows are picked by int64
 * indices of any shape, giving [*indices.shape, embedding_dim].
 *
 * The weight starts as torch's reset_parameters() draws it, normal(0, 1)
 * (from our Rng: torch's distribution, not its numbers). The math is
 * tensor_embedding (core/ops/embedding.c).
 */
#include "core/error.h"
#include "core/nn/module.h"
#include "core/ops.h"

typedef struct {
    Module base;
    int64_t num_embeddings, embedding_dim;
} Embedding;

int nn_embedding_shape(int64_t embedding_dim, int ndim, const int64_t *in, int *out_ndim,
                       int64_t *out) {
    if (ndim + 1 > TENSOR_MAX_DIMS)
        return error_set("its input has %d dims, at most %d", ndim, TENSOR_MAX_DIMS - 1);
    for (int i = 0; i < ndim; i++) out[i] = in[i];
    out[ndim] = embedding_dim;
    *out_ndim = ndim + 1;
    return 0;
}

static int embedding_infer_shape(Module *m, int ndim, const int64_t *in, int *out_ndim,
                                 int64_t *out) {
    return nn_embedding_shape(((const Embedding *)m)->embedding_dim, ndim, in, out_ndim, out);
}

static Tensor *embedding_forward(Module *m, Tensor *x) {
    return tensor_embedding(module_get(m, "weight"), x);
}

static const ModuleVTable embedding_vtable = {
    .type = "Embedding",
    .forward = embedding_forward,
    .infer_shape = embedding_infer_shape,
};

Module *nn_embedding(int64_t num_embeddings, int64_t embedding_dim, Rng *rng) {
    if (num_embeddings <= 0 || embedding_dim <= 0) {
        error_set("Embedding: num_embeddings and embedding_dim must be positive, got %lld and "
                  "%lld",
                  (long long)num_embeddings, (long long)embedding_dim);
        return NULL;
    }
    Embedding *e = (Embedding *)module_alloc(sizeof *e, &embedding_vtable);
    if (!e) return NULL;
    e->num_embeddings = num_embeddings;
    e->embedding_dim = embedding_dim;
    Module *m = &e->base;
    if (module_add_param(m, "weight", tensor_empty(SHAPE(num_embeddings, embedding_dim),
                                                   DTYPE_FLOAT32, DEVICE_CPU_INIT)) != 0 ||
        nn_init_normal_(module_get(m, "weight"), 0, 1, rng) != 0) {
        error_prefix("Embedding");
        module_free(m);
        return NULL;
    }
    return m;
}
