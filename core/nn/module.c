/* module.c - what every nn layer shares: forward with error paths, train/
 * eval, parameters, state_dict load and save, moves; see module.h.
 *
 * A layer is a struct whose first member is a Module, so one free() releases
 * it; its tensors sit in the Module's params/buffers arrays under torch's
 * names, which is all state_dict needs. Walking the tree is recursive: a
 * model's depth is a handful of Sequentials, not thousands.
 */
#include "core/nn/module.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/error.h"

static bool is_container(const Module *m) { return m->children != NULL || m->n_children > 0; }

Module *module_alloc(size_t size, const ModuleVTable *vtable) {
    Module *m = calloc(1, size);
    if (!m) {
        error_set("%s: out of memory", vtable->type);
        return NULL;
    }
    m->vtable = vtable;
    m->training = true;
    return m;
}

static int add_tensor(Module *m, NamedTensor *slots, int *count, const char *name, Tensor *t) {
    if (!t) return -1;
    if (*count == MODULE_MAX_TENSORS) {
        tensor_release(t);
        return error_set("%s: too many tensors (adding '%s')", m->vtable->type, name);
    }
    slots[*count] = (NamedTensor){name, t};
    (*count)++;
    return 0;
}

int module_add_param(Module *m, const char *name, Tensor *t) {
    if (t && tensor_set_requires_grad(t, true) != 0) {
        tensor_release(t);
        return -1;
    }
    return add_tensor(m, m->params, &m->n_params, name, t);
}

int module_add_buffer(Module *m, const char *name, Tensor *t) {
    return add_tensor(m, m->buffers, &m->n_buffers, name, t);
}

int module_add_child(Module *m, const char *name, Module *child) {
    if (!child) return -1;
    if (name && strlen(name) >= MODULE_NAME_MAX) {
        module_free(child);
        return error_set("%s: child name '%s' too long", m->vtable->type, name);
    }
    /* Always an array once a child is asked for: it marks a container. */
    Module **grown = realloc(m->children, (size_t)(m->n_children + 1) * sizeof *grown);
    if (!grown) {
        module_free(child);
        return error_set("%s: out of memory", m->vtable->type);
    }
    m->children = grown;
    child->parent = m;
    child->index = m->n_children;
    snprintf(child->name, sizeof child->name, "%s", name ? name : "");
    m->children[m->n_children++] = child;
    return 0;
}

void module_free(Module *m) {
    if (!m) return;
    for (int i = 0; i < m->n_children; i++) module_free(m->children[i]);
    free(m->children);
    for (int i = 0; i < m->n_params; i++) tensor_release(m->params[i].tensor);
    for (int i = 0; i < m->n_buffers; i++) tensor_release(m->buffers[i].tensor);
    if (m->vtable->free) m->vtable->free(m);
    free(m);
}

const char *module_type(const Module *m) { return m ? m->vtable->type : "(null)"; }

const char *module_path(const Module *m, char *buf, size_t n) {
    /* Steps from the leaf up, then written root first. */
    const Module *up[64];
    int depth = 0;
    for (const Module *p = m; p->parent && depth < 64; p = p->parent) up[depth++] = p;
    size_t len = 0;
    buf[0] = '\0';
    if (depth == 0) return buf;
    len += (size_t)snprintf(buf, n, "model");
    for (int i = depth - 1; i >= 0 && len < n; i--)
        len += (size_t)(up[i]->name[0] ? snprintf(buf + len, n - len, ".%s", up[i]->name)
                                       : snprintf(buf + len, n - len, "[%d]", up[i]->index));
    return buf;
}

/* "model[3] Linear: <message>" for a layer; containers pass their child's
 * message through untouched. */
static void prefix_with_path(const Module *m) {
    if (is_container(m)) return;
    char path[256];
    module_path(m, path, sizeof path);
    if (path[0])
        error_prefix("%s %s", path, m->vtable->type);
    else
        error_prefix("%s", m->vtable->type);
}

void module_prefix_error(const Module *m) {
    prefix_with_path(m);
}

int module_infer_same_shape(Module *m, int ndim, const int64_t *in_shape, int *out_ndim,
                            int64_t *out_shape) {
    for (int i = 0; i < ndim; i++) out_shape[i] = in_shape[i];
    *out_ndim = ndim;
    return 0;
}

int module_infer_shape(Module *m, int ndim, const int64_t *in_shape, int *out_ndim,
                       int64_t *out_shape) {
    if (!m) return error_set("module_infer_shape: no module");
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS)
        return error_set("module_infer_shape: %d dimensions (at most %d)", ndim, TENSOR_MAX_DIMS);
    if (m->vtable->infer_shape(m, ndim, in_shape, out_ndim, out_shape) == 0) return 0;
    prefix_with_path(m);
    return -1;
}

/* m's forward of x, through forward_consume when `consume` (which then
 * takes the caller's reference to x, also on failure). */
static Tensor *forward(Module *m, Tensor *x, bool consume) {
    Tensor *y = NULL;
    if (!m) {
        error_set("module_forward: no module");
    } else if (x && !is_container(m)) {
        /* Shape inference first: a mismatch then reads as the validator
         * reports it ("in_features=1000 but its input has 6272 features"),
         * rather than as the op's message. */
        int out_ndim;
        int64_t out_shape[TENSOR_MAX_DIMS];
        if (module_infer_shape(m, x->ndim, x->shape, &out_ndim, out_shape) != 0) {
            if (consume) tensor_release(x);
            return NULL;
        }
    }
    if (m && x) {
        bool own = consume && m->vtable->forward_consume;
        y = own ? m->vtable->forward_consume(m, x) : m->vtable->forward(m, x);
        if (consume && !own) tensor_release(x);
        if (!y) prefix_with_path(m);
    } else if (consume) {
        tensor_release(x);
    }
    return y;
}

Tensor *module_forward(Module *m, Tensor *x) { return forward(m, x, false); }

Tensor *module_forward_blocked(Module *m, Tensor *x) {
    if (!m || !x) {
        if (!m) error_set("module_forward_blocked: no module");
        tensor_release(x);
        return NULL;
    }
    int ndim, out_ndim;
    int64_t shape[TENSOR_MAX_DIMS], out_shape[TENSOR_MAX_DIMS];
    bool taken = m->vtable->forward_blocked != NULL;
    if (!taken) error_set("%s does not take the blocked layout", m->vtable->type);
    if (!taken || tensor_nchw_shape("forward", x, &ndim, shape) != 0) {
        prefix_with_path(m);
        tensor_release(x);
        return NULL;
    }
    if (!is_container(m) && module_infer_shape(m, ndim, shape, &out_ndim, out_shape) != 0) {
        tensor_release(x); /* the error has the path */
        return NULL;
    }
    Tensor *y = m->vtable->forward_blocked(m, x);
    if (!y) prefix_with_path(m);
    return y;
}

Tensor *module_forward_consume(Module *m, Tensor *x) { return forward(m, x, true); }

void module_train(Module *m, bool training) {
    if (!m) return;
    m->training = training;
    for (int i = 0; i < m->n_children; i++) module_train(m->children[i], training);
}

void module_set_rng(Module *m, Rng *rng) {
    if (!m) return;
    m->rng = rng;
    for (int i = 0; i < m->n_children; i++) module_set_rng(m->children[i], rng);
}

void module_set_dist(Module *m, DistGroup *g, const DistRows *rows) {
    if (!m) return;
    m->dist = g;
    m->rows = rows;
    for (int i = 0; i < m->n_children; i++) module_set_dist(m->children[i], g, rows);
}

int module_draw_stream(Module *m, int64_t rows, int64_t per_row, ModuleStream *out) {
    if (!m->rng) return error_set("no Rng to draw from in training mode (module_set_rng)");
    const DistRows *r = m->rows;
    bool shard = r && dist_active(m->dist);
    const Rng *rng = m->rng;
    out->seed = rng->seed;
    out->base = rng->device_base;
    out->offset = rng->offset - (rng->device_base ? rng->capture_base : 0) +
                  (shard ? (uint64_t)(r->first * per_row) : 0);
    out->row_stride = (uint64_t)((shard ? r->stride : 1) * per_row);
    m->rng->offset += (uint64_t)((shard ? r->total : rows) * per_row);
    return 0;
}

Tensor *module_get(Module *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return m->params[i].tensor;
    for (int i = 0; i < m->n_buffers; i++)
        if (strcmp(m->buffers[i].name, name) == 0) return m->buffers[i].tensor;
    return NULL;
}

/* ---- walking every tensor in state_dict order ---- */

/* Calls fn(prefix + name, slot, is_param, ctx) for every tensor of the tree,
 * in torch's order: own parameters, own buffers, then each child with
 * "<i>." added to the prefix. Stops at the first nonzero return. */
typedef int (*VisitFn)(const char *name, NamedTensor *slot, bool is_param, void *ctx);

static int visit(Module *m, char *prefix, size_t len, size_t cap, VisitFn fn, void *ctx) {
    char name[512];
    for (int i = 0; i < m->n_params; i++) {
        snprintf(name, sizeof name, "%.*s%s", (int)len, prefix, m->params[i].name);
        int rc = fn(name, &m->params[i], true, ctx);
        if (rc) return rc;
    }
    for (int i = 0; i < m->n_buffers; i++) {
        snprintf(name, sizeof name, "%.*s%s", (int)len, prefix, m->buffers[i].name);
        int rc = fn(name, &m->buffers[i], false, ctx);
        if (rc) return rc;
    }
    for (int i = 0; i < m->n_children; i++) {
        const char *child = m->children[i]->name;
        int k = child[0] ? snprintf(prefix + len, cap - len, "%s.", child)
                         : snprintf(prefix + len, cap - len, "%d.", i);
        if (k < 0 || (size_t)k >= cap - len) return error_set("state_dict: module tree too deep");
        int rc = visit(m->children[i], prefix, len + (size_t)k, cap, fn, ctx);
        if (rc) return rc;
    }
    return 0;
}

static int walk(Module *m, VisitFn fn, void *ctx) {
    char prefix[256] = "";
    return visit(m, prefix, 0, sizeof prefix, fn, ctx);
}

/* ---- parameters ---- */

/* Every parameter once: a tied one is registered in two modules. */
typedef struct {
    Tensor **out; /* room for every slot */
    int n;
    int64_t numel;
} ParamCollect;

static int count_param(const char *name, NamedTensor *slot, bool is_param, void *ctx) {
    if (is_param) ++*(int *)ctx;
    return 0;
}

static int collect_param(const char *name, NamedTensor *slot, bool is_param, void *ctx) {
    ParamCollect *c = ctx;
    if (!is_param || !slot->tensor->requires_grad) return 0;
    for (int i = 0; i < c->n; i++)
        if (c->out[i] == slot->tensor) return 0; /* tied: seen already */
    c->out[c->n++] = slot->tensor;
    c->numel += tensor_numel(slot->tensor);
    return 0;
}

static Tensor **collect_params(Module *m, ParamCollect *c) {
    int slots = 0;
    walk(m, count_param, &slots);
    *c = (ParamCollect){.out = malloc((size_t)(slots ? slots : 1) * sizeof *c->out)};
    if (!c->out) {
        error_set("module_parameters: out of memory");
        return NULL;
    }
    walk(m, collect_param, c);
    return c->out;
}

Tensor **module_parameters(Module *m, int *n) {
    ParamCollect c;
    if (!collect_params(m, &c)) return NULL;
    *n = c.n;
    return c.out;
}

int64_t module_num_parameters(Module *m) {
    ParamCollect c;
    if (!collect_params(m, &c)) return -1;
    free(c.out);
    return c.numel;
}

/* ---- lookup by qualified name ---- */

typedef struct {
    const char *name;
    Tensor *found;
} FindCtx;

static int find_tensor(const char *name, NamedTensor *slot, bool is_param, void *ctx) {
    FindCtx *c = ctx;
    if (strcmp(name, c->name) != 0) return 0;
    c->found = slot->tensor;
    return 1; /* stop */
}

Tensor *module_find(Module *m, const char *qualified_name) {
    FindCtx c = {qualified_name, NULL};
    walk(m, find_tensor, &c);
    return c.found;
}

/* ---- state_dict ---- */

static int add_to_dict(const char *name, NamedTensor *slot, bool is_param, void *ctx) {
    Tensor *d = tensor_detach(slot->tensor);
    int rc = d ? tensor_dict_set(ctx, name, d) : -1;
    tensor_release(d);
    return rc;
}

int module_state_dict(Module *m, TensorDict *out) { return walk(m, add_to_dict, out); }

/* Appends ", 'name'" to a message buffer, ending in "..." once full. */
static void append_name(char *buf, size_t cap, size_t *len, const char *name, bool first) {
    if (*len >= cap) return;
    int k = snprintf(buf + *len, cap - *len, "%s'%s'", first ? "" : ", ", name);
    if (k < 0 || (size_t)k >= cap - *len) {
        /* Out of room: end with an ellipsis where it fits. */
        if (cap >= 4) strcpy(buf + cap - 4, "...");
        *len = cap;
        return;
    }
    *len += (size_t)k;
}

int module_load_state_dict(Module *m, const TensorDict *sd, bool strict) {
    if (!m || !sd) return error_set("load_state_dict: no module or no state_dict");
    TensorDict own;
    tensor_dict_init(&own);
    if (module_state_dict(m, &own) != 0) {
        tensor_dict_free(&own);
        return -1;
    }
    /* Every check before the first copy, so a failed load leaves the model
     * as it was. */
    char missing[512], unexpected[512];
    size_t n_missing = 0, n_unexpected = 0, missing_len = 0, unexpected_len = 0;
    for (int i = 0; i < own.count; i++) {
        Tensor *src = tensor_dict_get(sd, own.names[i]);
        if (!src) {
            append_name(missing, sizeof missing, &missing_len, own.names[i], n_missing++ == 0);
            continue;
        }
        Tensor *dst = own.tensors[i];
        if (!tensor_same_shape(src, dst)) {
            char a[128], b[128];
            error_set("load_state_dict: '%s' has shape %s in the file but %s in the model",
                      own.names[i], tensor_shape_str(src, a, sizeof a),
                      tensor_shape_str(dst, b, sizeof b));
            tensor_dict_free(&own);
            return -1;
        }
    }
    for (int i = 0; i < sd->count; i++)
        if (tensor_dict_index(&own, sd->names[i]) < 0)
            append_name(unexpected, sizeof unexpected, &unexpected_len, sd->names[i],
                        n_unexpected++ == 0);
    if (strict && (n_missing || n_unexpected)) {
        if (n_missing && n_unexpected)
            error_set("load_state_dict: missing key(s) %s; unexpected key(s) %s", missing,
                      unexpected);
        else if (n_missing)
            error_set("load_state_dict: missing key(s) %s", missing);
        else
            error_set("load_state_dict: unexpected key(s) %s", unexpected);
        tensor_dict_free(&own);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < own.count && rc == 0; i++) {
        Tensor *src = tensor_dict_get(sd, own.names[i]);
        if (src && tensor_copy_(own.tensors[i], src) != 0) {
            error_prefix("load_state_dict: '%s'", own.names[i]);
            rc = -1;
        }
    }
    tensor_dict_free(&own);
    return rc;
}

/* ---- moves ---- */

/* Tied tensors stay tied: a tensor seen in an earlier slot gets the same
 * replacement (the pairs hold no references). */
typedef struct {
    bool to_device;
    Device device;
    DType dtype;
    int n_moved, cap;
    Tensor **from, **to;
} MoveCtx;

static Tensor *moved_before(const MoveCtx *c, const Tensor *t) {
    for (int i = 0; i < c->n_moved; i++)
        if (c->from[i] == t) return c->to[i];
    return NULL;
}

static int remember_move(MoveCtx *c, Tensor *from, Tensor *to) {
    if (c->n_moved == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        Tensor **f = realloc(c->from, (size_t)cap * sizeof *f);
        if (f) c->from = f;
        Tensor **t = f ? realloc(c->to, (size_t)cap * sizeof *t) : NULL;
        if (!t) return error_set("out of memory");
        c->to = t;
        c->cap = cap;
    }
    c->from[c->n_moved] = from;
    c->to[c->n_moved++] = to;
    return 0;
}

static Tensor *moved(Tensor *t, const MoveCtx *c) {
    if (c->to_device) return tensor_to_device(t, c->device);
    if (!dtype_is_float(t->dtype)) return tensor_retain(t);
    return tensor_to_dtype(t, c->dtype);
}

static int move_tensor(const char *name, NamedTensor *slot, bool is_param, void *ctx) {
    MoveCtx *c = ctx;
    Tensor *t = slot->tensor;
    Tensor *tied = moved_before(c, t);
    if (tied) {
        slot->tensor = tensor_retain(tied);
        tensor_release(t);
        return 0;
    }
    /* The copy is a new leaf: no graph from the old tensor to the new. */
    bool prev = autograd_set_enabled(false);
    Tensor *nt = moved(t, c);
    Tensor *ng = nt && t->grad ? moved(t->grad, c) : NULL;
    autograd_set_enabled(prev);
    if (!nt || (t->grad && !ng)) {
        tensor_release(nt);
        return error_prefix("moving '%s'", name);
    }
    if (nt == t) { /* already there */
        tensor_release(nt);
        tensor_release(ng);
        return 0;
    }
    if (remember_move(c, t, nt) != 0) {
        tensor_release(nt);
        tensor_release(ng);
        return error_prefix("moving '%s'", name);
    }
    nt->requires_grad = t->requires_grad;
    nt->grad = ng;
    tensor_release(t);
    slot->tensor = nt;
    return 0;
}

static int move_all(Module *m, MoveCtx *c) {
    int rc = walk(m, move_tensor, c);
    free(c->from);
    free(c->to);
    return rc;
}

int module_to(Module *m, Device device) {
    MoveCtx c = {.to_device = true, .device = device};
    if (move_all(m, &c) != 0) return error_prefix("module_to");
    return 0;
}

int module_to_dtype(Module *m, DType dtype) {
    if (!dtype_is_float(dtype))
        return error_set("module_to_dtype: expected a float dtype, got %s", dtype_name(dtype));
    MoveCtx c = {.to_device = false, .dtype = dtype};
    if (move_all(m, &c) != 0) return error_prefix("module_to_dtype");
    return 0;
}
