/* dnnl.c - the oneDNN helpers of core/cpu/dnnl.h. */
#include "core/cpu/dnnl.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "core/error.h"

static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static dnnl_engine_t engine;
static dnnl_status_t engine_status;

static void engine_create(void) {
    engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0);
}

/* Made once: every memory object of every call asks for it, and a lock
 * there was one more per object. */
dnnl_engine_t cpu_dnnl_engine(void) {
    pthread_once(&engine_once, engine_create);
    if (engine_status != dnnl_success) cpu_dnnl_failed(engine_status, "engine");
    return engine_status == dnnl_success ? engine : NULL;
}

/* The status of this thread's last failure, for the plan cache to tell a
 * refusal (no kernel for the case) from a passing one (memory). */
static _Thread_local dnnl_status_t last_failure;

static const char *status_text(dnnl_status_t st) {
    switch (st) {
    case dnnl_out_of_memory: return "out of memory";
    case dnnl_invalid_arguments: return "invalid arguments";
    case dnnl_unimplemented: return "unimplemented: no kernel for this case on this CPU";
    case dnnl_runtime_error: return "runtime error";
    default: return "failed";
    }
}

int cpu_dnnl_failed(dnnl_status_t st, const char *what) {
    last_failure = st;
    return error_set("oneDNN %s: %s (status %d)", what, status_text(st), (int)st);
}

dnnl_status_t cpu_dnnl_user_scratchpad(dnnl_primitive_attr_t *attr) {
    *attr = NULL;
    dnnl_status_t st = dnnl_primitive_attr_create(attr);
    if (st == dnnl_success)
        st = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    return st;
}

/* dims copied into a full dnnl_dims_t: oneDNN's prototypes take whole
 * arrays, which gcc checks. */
void cpu_dnnl_desc(dnnl_memory_desc_t *md, int ndims, const int64_t *dims_in, bool any) {
    dnnl_dims_t dims = {0};
    memcpy(dims, dims_in, (size_t)ndims * sizeof *dims);
    dnnl_format_tag_t tag = any          ? dnnl_format_tag_any
                            : ndims == 5 ? dnnl_goihw
                            : ndims == 4 ? dnnl_nchw
                                         : dnnl_a;
    dnnl_memory_desc_init_by_tag(md, ndims, dims, dnnl_f32, tag);
}

dnnl_memory_desc_t cpu_dnnl_blocked_desc(const int64_t *dims) {
    dnnl_memory_desc_t md;
    dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, dnnl_nChw16c);
    return md;
}

/* Our weight [O, C/g, kh, kw] is oneDNN's goihw [g, O/g, C/g, kh, kw]. */
static int weight_dims(const DnnlConvShape *s, int64_t *dims) {
    int64_t O = s->out_channels, C = s->w.channels, g = s->groups;
    if (g == 1) {
        memcpy(dims, (int64_t[]){O, C, s->w.kernel_h, s->w.kernel_w}, 4 * sizeof *dims);
        return 4;
    }
    memcpy(dims, (int64_t[]){g, O / g, C / g, s->w.kernel_h, s->w.kernel_w}, 5 * sizeof *dims);
    return 5;
}

void cpu_dnnl_conv_descs(const DnnlConvShape *s, bool any, dnnl_memory_desc_t *src,
                         dnnl_memory_desc_t *weights, dnnl_memory_desc_t *dst) {
    const Window2d *w = &s->w;
    int64_t wd[5];
    int wn = weight_dims(s, wd);
    cpu_dnnl_desc(src, 4, (int64_t[]){w->batch, w->channels, w->height, w->width}, any);
    cpu_dnnl_desc(weights, wn, wd, any);
    cpu_dnnl_desc(dst, 4, (int64_t[]){w->batch, s->out_channels, w->out_h, w->out_w}, any);
}

dnnl_status_t cpu_dnnl_conv_desc(const DnnlConvShape *s, DnnlConvPass pass, dnnl_data_type_t in,
                                 const dnnl_memory_desc_t *bias, const dnnl_memory_desc_t *dst,
                                 dnnl_convolution_desc_t *d) {
    return cpu_dnnl_conv_desc_alg(s, pass, in, cpu_dnnl_conv_algorithm(s, in), bias, dst, d);
}

dnnl_status_t cpu_dnnl_conv_desc_alg(const DnnlConvShape *s, DnnlConvPass pass,
                                     dnnl_data_type_t in, dnnl_alg_kind_t alg,
                                     const dnnl_memory_desc_t *bias,
                                     const dnnl_memory_desc_t *dst, dnnl_convolution_desc_t *d) {
    dnnl_memory_desc_t src, weights, any_dst;
    cpu_dnnl_conv_descs(s, true, &src, &weights, &any_dst);
    src.data_type = pass == DNNL_CONV_BACKWARD_DATA ? dnnl_f32 : in;
    weights.data_type = pass == DNNL_CONV_BACKWARD_WEIGHTS ? dnnl_f32 : in;
    any_dst.data_type = pass == DNNL_CONV_FORWARD ? dnnl_f32 : in;
    if (!dst) dst = &any_dst;
    dnnl_dims_t st, dl, pl, pr;
    cpu_dnnl_geometry(&s->w, st, dl, pl, pr);
    return pass == DNNL_CONV_FORWARD
            ? dnnl_dilated_convolution_forward_desc_init(d, dnnl_forward_training, alg, &src,
                                                         &weights, bias, dst, st, dl, pl, pr)
        : pass == DNNL_CONV_BACKWARD_DATA
            ? dnnl_dilated_convolution_backward_data_desc_init(d, alg, &src, &weights, dst, st, dl,
                                                               pl, pr)
            : dnnl_dilated_convolution_backward_weights_desc_init(d, alg, &src, &weights, bias,
                                                                  dst, st, dl, pl, pr);
}

/* The right padding makes oneDNN's output size formula give out_h
 * exactly; where the window's last step stops short of the input's end it
 * would be negative, and the smallest such pad >= 0 gives the same out_h
 * (floor division) and reads nothing more. */
void cpu_dnnl_geometry(const Window2d *w, dnnl_dims_t strides, dnnl_dims_t dilates,
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

int cpu_dnnl_reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                     dnnl_primitive_t *r) {
    *r = NULL;
    if (dnnl_memory_desc_equal(from, to)) return 0;
    dnnl_engine_t e = cpu_dnnl_engine();
    if (!e) return -1;
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, from, e, to, e, NULL);
    if (st == dnnl_success) {
        st = dnnl_primitive_create(r, pd);
        dnnl_primitive_desc_destroy(pd);
    }
    return st == dnnl_success ? 0 : cpu_dnnl_failed(st, "reorder");
}

int cpu_dnnl_reorder_run(dnnl_stream_t s, dnnl_primitive_t r, dnnl_memory_t from,
                         dnnl_memory_t to) {
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    return cpu_dnnl_execute(r, s, 2, args, "reorder");
}

int cpu_dnnl_memory(const dnnl_memory_desc_t *md, void *data, dnnl_memory_t *m) {
    dnnl_engine_t e = cpu_dnnl_engine();
    if (!e) return -1;
    dnnl_status_t st = dnnl_memory_create(m, md, e, data);
    return st == dnnl_success ? 0 : cpu_dnnl_failed(st, "memory");
}

int cpu_dnnl_execute(dnnl_primitive_t p, dnnl_stream_t s, int n, const dnnl_exec_arg_t *args,
                     const char *what) {
    dnnl_status_t st = dnnl_primitive_execute(p, s, n, args);
    return st == dnnl_success ? 0 : cpu_dnnl_failed(st, what);
}

static atomic_bool library_on = true;

void cpu_conv_library(bool on) {
    atomic_store(&library_on, on);
}

bool cpu_dnnl_takes(const Tensor *t) {
    return atomic_load(&library_on) && t->dtype == DTYPE_FLOAT32;
}

/* A key's plan, or (plan NULL) oneDNN's refusal of it, kept so that a
 * shape it has no kernel for is not planned again at every call. */
struct DnnlPlanEntry {
    void *key, *plan;
    char *refusal;
    size_t key_size;
    DnnlPlanEntry *next;
};

static atomic_int plan_limit = 256;

int cpu_dnnl_plan_limit(int n) {
    return atomic_exchange(&plan_limit, n);
}

/* A new entry for key at the cache's head (plan, or refusal where plan is
 * NULL); -1 when out of memory. With c->mu held. */
static int remember(DnnlPlanCache *c, const void *key, size_t key_size, void *plan,
                    const char *refusal) {
    DnnlPlanEntry *e = calloc(1, sizeof *e);
    void *k = e ? malloc(key_size) : NULL;
    char *r = k && refusal ? strdup(refusal) : NULL;
    if (!k || (refusal && !r)) {
        free(e), free(k);
        return -1;
    }
    memcpy(k, key, key_size);
    *e = (DnnlPlanEntry){k, plan, r, key_size, c->head};
    c->head = e;
    c->n++;
    return 0;
}

void *cpu_dnnl_plan(DnnlPlanCache *c, const void *key, size_t key_size,
                    void *(*make)(const void *key), void (*drop)(void *plan), bool *owned) {
    *owned = false;
    pthread_mutex_lock(&c->mu);
    DnnlPlanEntry *e = c->head;
    while (e && !(e->key_size == key_size && memcmp(e->key, key, key_size) == 0)) e = e->next;
    void *plan = e ? e->plan : NULL;
    if (e && !plan) {
        error_set("%s", e->refusal); /* refused before: the same words */
    } else if (!e) {
        last_failure = dnnl_success;
        plan = make(key);
        bool full = c->n >= atomic_load(&plan_limit);
        if (!plan && last_failure == dnnl_unimplemented && !full) {
            Error refused = *error_last();
            if (remember(c, key, key_size, NULL, refused.message) != 0) error_clear();
            error_restore(&refused);
        } else if (plan && full) {
            *owned = true; /* the cache is full: this call's alone */
        } else if (plan && remember(c, key, key_size, plan, NULL) != 0) {
            drop(plan);
            plan = NULL;
            error_set("oneDNN: out of memory for a plan");
        }
    }
    pthread_mutex_unlock(&c->mu);
    return plan;
}

size_t cpu_dnnl_arena_bytes(size_t bytes) {
    return (bytes + 63) & ~(size_t)63;
}

int cpu_dnnl_arena_open(DnnlArena *a, size_t bytes) {
    *a = (DnnlArena){NULL, bytes, 0};
    if (bytes && !(a->block = cpu_alloc(DEVICE_CPU_INIT, bytes)))
        return error_set("oneDNN: out of memory for %zu bytes of scratch", bytes);
    return 0;
}

void *cpu_dnnl_arena_take(DnnlArena *a, size_t bytes) {
    void *p = a->block + a->used;
    a->used += cpu_dnnl_arena_bytes(bytes);
    return p;
}

void cpu_dnnl_arena_close(DnnlArena *a) {
    if (a->block) cpu_free(DEVICE_CPU_INIT, a->block);
    a->block = NULL;
}

int cpu_dnnl_call_open(DnnlCall *c, size_t arena_bytes) {
    memset(c, 0, sizeof *c);
    dnnl_engine_t e = cpu_dnnl_engine();
    if (!e) return -1;
    dnnl_status_t st = dnnl_stream_create(&c->stream, e, dnnl_stream_default_flags);
    if (st != dnnl_success) {
        c->stream = NULL;
        return cpu_dnnl_failed(st, "stream");
    }
    return cpu_dnnl_arena_open(&c->arena, arena_bytes);
}

dnnl_memory_t cpu_dnnl_call_memory(DnnlCall *c, const dnnl_memory_desc_t *md, void *data) {
    if (c->n_memory == DNNL_CALL_MAX_MEMORY) {
        error_set("conv2d: more than %d oneDNN memory objects in one call", DNNL_CALL_MAX_MEMORY);
        return NULL;
    }
    if (!data) data = cpu_dnnl_arena_take(&c->arena, dnnl_memory_desc_get_size(md));
    dnnl_memory_t m;
    if (cpu_dnnl_memory(md, data, &m) != 0) return NULL;
    c->memory[c->n_memory++] = m;
    return m;
}

int cpu_dnnl_call_close(DnnlCall *c, int rc) {
    if (rc == 0 && c->stream) rc = cpu_dnnl_wait(c);
    for (int i = 0; i < c->n_memory; i++) dnnl_memory_destroy(c->memory[i]);
    if (c->stream) dnnl_stream_destroy(c->stream);
    cpu_dnnl_arena_close(&c->arena);
    return rc;
}

void *cpu_dnnl_data(dnnl_memory_t m) {
    void *data = NULL;
    dnnl_memory_get_data_handle(m, &data);
    return data;
}

int cpu_dnnl_wait(DnnlCall *c) {
    dnnl_status_t st = dnnl_stream_wait(c->stream);
    return st == dnnl_success ? 0 : cpu_dnnl_failed(st, "stream");
}

static const char *isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

const char *cpu_dnnl_library_name(char *buf, size_t n) {
    const dnnl_version_t *v = dnnl_version();
    int at = snprintf(buf, n, "oneDNN %d.%d.%d, %s kernels%s", v->major, v->minor, v->patch,
                      isa_name(dnnl_get_effective_cpu_isa()),
                      cpu_dnnl_winograd_available() ? ", Winograd for 3x3" : "");
    int lo, hi;
    if (at >= 0 && (size_t)at < n && cpu_gemm_dnnl_range(&lo, &hi))
        snprintf(buf + at, n - (size_t)at, ", float32 matmul for m*n*k 2^%d..2^%d", lo, hi);
    return buf;
}

/* This thread's precision (a job's, set by its trainer). */
static _Thread_local Precision precision = PRECISION_FLOAT32;

int cpu_check_precision(Device device, Precision p) {
    (void)device;
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if (p == PRECISION_FLOAT32 || isa == dnnl_cpu_isa_avx512_core_bf16 ||
        isa == dnnl_cpu_isa_avx512_core_amx)
        return 0;
    return error_set("%s needs a CPU with AVX512-BF16 or AMX; oneDNN finds %s here",
                     precision_name(p), isa_name(isa));
}

void cpu_set_precision(Device device, Precision p) {
    (void)device;
    precision = p;
}

dnnl_data_type_t cpu_dnnl_input_type(void) {
    return precision == PRECISION_BF16 ? dnnl_bf16 : dnnl_f32;
}

dnnl_memory_desc_t cpu_dnnl_retyped(const dnnl_memory_desc_t *md, dnnl_data_type_t t) {
    dnnl_memory_desc_t r = *md;
    r.data_type = t; /* strides count elements, so the layout stays the same */
    return r;
}
