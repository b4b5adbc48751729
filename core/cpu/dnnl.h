/* dnnl.h - what the CPU backend's oneDNN files (conv_dnnl.c,
 * conv_block_dnnl.c, gemm_dnnl.c) share: the one engine, failures as error
 * messages, memory descriptors, a convolution's descriptors, algorithm
 * (conv_winograd.c) and geometry, reorders, plan caches, each call's
 * stream and scratch. */
#ifndef TRAIND_CORE_CPU_DNNL_H
#define TRAIND_CORE_CPU_DNNL_H

#include <pthread.h>

#include <oneapi/dnnl/dnnl.h>

#include "core/backend.h"

/* A convolution's shape: its window over the input, output channels and
 * groups. */
typedef struct {
    Window2d w;
    int64_t out_channels;
    int groups;
} DnnlConvShape;

/* The CPU engine, made on first use; NULL with an error set. */
dnnl_engine_t cpu_dnnl_engine(void);
/* New attributes whose primitives take their scratchpad from the caller
 * (each call's arena: primitives are shared by threads). NULL *attr when
 * creating them failed. */
dnnl_status_t cpu_dnnl_user_scratchpad(dnnl_primitive_attr_t *attr);
/* error_set("oneDNN <what>: <the status in words> (status N)"); returns -1. */
int cpu_dnnl_failed(dnnl_status_t st, const char *what);
/* float32 [dims] in the plain layout (nchw, goihw, a) or, with any, left
 * to the primitive that takes it. */
void cpu_dnnl_desc(dnnl_memory_desc_t *md, int ndims, const int64_t *dims, bool any);
/* [N, C, H, W] in nChw16c, f32: the blocked layout (core/ops.h's
 * TENSOR_BLOCK lanes) tensors and blocks hand on. */
dnnl_memory_desc_t cpu_dnnl_blocked_desc(const int64_t *dims);
/* The convolution's src [N, C, H, W], weights (goihw when grouped) and
 * dst [N, O, out_h, out_w]. */
void cpu_dnnl_conv_descs(const DnnlConvShape *s, bool any, dnnl_memory_desc_t *src,
                         dnnl_memory_desc_t *weights, dnnl_memory_desc_t *dst);
/* A convolution's passes, and a pass's operation descriptor with layouts
 * left to oneDNN: what it reads in `in` (f32, or bf16 under that
 * precision: the forward's src and weights, the data pass's weights and
 * diff_dst, the weight pass's src and diff_dst), what it writes in f32.
 * bias: NULL for none (the data pass has none); dst, where not NULL, the
 * layout of dst / diff_dst instead of oneDNN's choice (the block's y).
 * Returns oneDNN's status, as its own descriptor inits do. */
typedef enum {
    DNNL_CONV_FORWARD,
    DNNL_CONV_BACKWARD_DATA,
    DNNL_CONV_BACKWARD_WEIGHTS
} DnnlConvPass;
dnnl_status_t cpu_dnnl_conv_desc(const DnnlConvShape *s, DnnlConvPass pass, dnnl_data_type_t in,
                                 const dnnl_memory_desc_t *bias, const dnnl_memory_desc_t *dst,
                                 dnnl_convolution_desc_t *d);
/* The same with the algorithm given (cpu_dnnl_conv_desc asks
 * cpu_dnnl_conv_algorithm). */
dnnl_status_t cpu_dnnl_conv_desc_alg(const DnnlConvShape *s, DnnlConvPass pass,
                                     dnnl_data_type_t in, dnnl_alg_kind_t alg,
                                     const dnnl_memory_desc_t *bias,
                                     const dnnl_memory_desc_t *dst, dnnl_convolution_desc_t *d);
/* conv_winograd.c: Winograd where it is faster, else direct; whether this
 * processor has oneDNN's Winograd kernels for all three passes (probed
 * once; false under TRAIND_WINOGRAD=0). */
dnnl_alg_kind_t cpu_dnnl_conv_algorithm(const DnnlConvShape *s, dnnl_data_type_t in);
bool cpu_dnnl_winograd_available(void);
/* Strides, dilations (oneDNN counts the gaps) and paddings of a window. */
void cpu_dnnl_geometry(const Window2d *w, dnnl_dims_t strides, dnnl_dims_t dilates,
                       dnnl_dims_t pad_l, dnnl_dims_t pad_r);
/* The reorder from one layout to another; *r NULL when they are equal. */
int cpu_dnnl_reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                     dnnl_primitive_t *r);
int cpu_dnnl_reorder_run(dnnl_stream_t s, dnnl_primitive_t r, dnnl_memory_t from, dnnl_memory_t to);
/* A memory object over data (not owned). */
int cpu_dnnl_memory(const dnnl_memory_desc_t *md, void *data, dnnl_memory_t *m);
/* The memory object's data. */
void *cpu_dnnl_data(dnnl_memory_t m);
/* Runs a primitive (on the CPU, done on return). */
int cpu_dnnl_execute(dnnl_primitive_t p, dnnl_stream_t s, int n, const dnnl_exec_arg_t *args,
                     const char *what);

/* The data type oneDNN's convolutions and matmuls read their inputs in on
 * this thread: bf16 under cpu_set_precision(PRECISION_BF16), else f32. */
dnnl_data_type_t cpu_dnnl_input_type(void);
/* md in another data type, the same layout (bf16 beside float32). */
dnnl_memory_desc_t cpu_dnnl_retyped(const dnnl_memory_desc_t *md, dnnl_data_type_t t);

/* cpu_dnnl_takes: core/cpu/cpu.h */

/* gemm_dnnl.c: a float32 product through oneDNN's matmul, its operands
 * read as `in` (f32, or bf16: rounded), accumulated and written in float32
 * (alpha 1, beta 0 or 1). 0, or -1 with an error. */
int cpu_gemm_dnnl(dnnl_data_type_t in, bool trans_a, bool trans_b, int64_t m, int64_t n,
                  int64_t k, double alpha, const float *a, int64_t lda, const float *b,
                  int64_t ldb, double beta, float *c, int64_t ldc);

/* Plans (primitives and what surrounds them) made once per key and kept
 * for the process: a job's shapes are few, and the next job usually
 * repeats them. Keys are compared as bytes (zero their padding). A cache
 * keeps at most cpu_dnnl_plan_limit plans: past that a plan is made for
 * one call and handed over (*owned), for the caller to drop after it, so
 * a daemon that meets shape after shape stays bounded (oneDNN's own
 * primitive cache keeps the remaking cheap). A key oneDNN refused
 * (dnnl_unimplemented: no kernel for the case on this CPU) is kept too,
 * its error said again at each call without planning it again; any other
 * failure (memory) is tried again at the next call. */
typedef struct DnnlPlanEntry DnnlPlanEntry;
typedef struct {
    pthread_mutex_t mu;
    DnnlPlanEntry *head;
    int n;
} DnnlPlanCache;
#define DNNL_PLAN_CACHE_INIT                                                                       \
    { PTHREAD_MUTEX_INITIALIZER, NULL, 0 }
/* The plan for key, made by make(key) on first use; NULL with an error.
 * *owned: the caller drops it (drop) when done. */
void *cpu_dnnl_plan(DnnlPlanCache *c, const void *key, size_t key_size,
                    void *(*make)(const void *key), void (*drop)(void *plan), bool *owned);

/* One call's scratch: one block of the host allocator, handed out in
 * 64-byte aligned pieces. */
typedef struct {
    char *block;
    size_t size, used;
} DnnlArena;
int cpu_dnnl_arena_open(DnnlArena *a, size_t bytes);
void *cpu_dnnl_arena_take(DnnlArena *a, size_t bytes);
void cpu_dnnl_arena_close(DnnlArena *a);
/* bytes rounded up to the arena's alignment, to size an arena. */
size_t cpu_dnnl_arena_bytes(size_t bytes);

/* One call: its stream, its arena, and the memory objects it made. */
#define DNNL_CALL_MAX_MEMORY 16
typedef struct {
    DnnlArena arena;
    dnnl_stream_t stream;
    dnnl_memory_t memory[DNNL_CALL_MAX_MEMORY];
    int n_memory;
} DnnlCall;
int cpu_dnnl_call_open(DnnlCall *c, size_t arena_bytes);
/* A memory object of layout md over data, or over a new piece of the
 * arena when data is NULL; NULL with an error set. */
dnnl_memory_t cpu_dnnl_call_memory(DnnlCall *c, const dnnl_memory_desc_t *md, void *data);
/* Waits for what the call's stream has been given, before code of ours
 * reads its results. */
int cpu_dnnl_wait(DnnlCall *c);
/* Waits for the stream when rc is 0, frees it all; rc, or -1 where the
 * wait failed. */
int cpu_dnnl_call_close(DnnlCall *c, int rc);

#endif
