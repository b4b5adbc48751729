/* gemm_dnnl.c - float32 matrix products through oneDNN's matmul,
 * read in float32 or in bfloat16, accumulated and written in float32, C's
 * old values added in float32 for beta 1.
 *
 * Float32: the products gemm.c's rule sends here, where oneDNN measures
 * faster than OpenBLAS (gemm.c says which and why); the matmul reads the
 * operands where they lie.
 *
 * Bfloat16, under "precision": "bf16": both operands rounded to bfloat16
 * (round to nearest even, oneDNN's reorder into dense copies from the
 * call's arena), then the matmul (brgemm on AVX512-BF16 or AMX). The GPU's
 * bf16 (CUBLAS_COMPUTE_32F_FAST_16BF) computes the same, and so do
 * autocast's bf16 matmuls up to their bf16 outputs. Every float32 product
 * of a thread in bf16 goes here, whatever its size, so a job's arithmetic
 * does not depend on its shapes. Measured on 2 Zen 4 cores (AVX512-BF16),
 * with other work on the machine: GPT-2's QKV product [1024, 768] x
 * [768, 2304] 18 ms against float32's 34 in oneDNN, its vocabulary head
 * 322 against 550; a whole GPT-2 small step 7.6-7.9 s against 9.3-9.5 in
 * float32.
 *
 * A plan per shape (input type, transposes, sizes, row strides, beta): the
 * reorders, if any, and the matmul.
 */
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "core/cpu/dnnl.h"
#include "core/error.h"

typedef struct {
    dnnl_data_type_t in;
    bool trans_a, trans_b, accumulate;
    int64_t m, n, k, lda, ldb, ldc;
} GemmKey;

typedef struct {
    dnnl_primitive_t to_a, to_b, matmul;
    dnnl_memory_desc_t a, b, a_in, b_in, c, scratch;
} GemmPlan;

/* Row-major a [m, k] (stored [k, m] when transposed) and b [k, n] (stored
 * [n, k]) as strides over the logical matrices; what the matmul reads:
 * their dense bf16 copies, or the float32 operands themselves; c [m, n]. */
static void descs(const GemmKey *k, GemmPlan *p) {
    dnnl_dims_t ad = {k->m, k->k}, bd = {k->k, k->n}, cd = {k->m, k->n};
    dnnl_dims_t as = {k->trans_a ? 1 : k->lda, k->trans_a ? k->lda : 1};
    dnnl_dims_t bs = {k->trans_b ? 1 : k->ldb, k->trans_b ? k->ldb : 1};
    dnnl_dims_t cs = {k->ldc, 1};
    dnnl_memory_desc_init_by_strides(&p->a, 2, ad, dnnl_f32, as);
    dnnl_memory_desc_init_by_strides(&p->b, 2, bd, dnnl_f32, bs);
    dnnl_memory_desc_init_by_strides(&p->c, 2, cd, dnnl_f32, cs);
    p->a_in = p->a, p->b_in = p->b;
    if (k->in == dnnl_f32) return;
    dnnl_memory_desc_init_by_tag(&p->a_in, 2, ad, k->in, dnnl_ab);
    dnnl_memory_desc_init_by_tag(&p->b_in, 2, bd, k->in, dnnl_ab);
}

static dnnl_status_t attributes(const GemmKey *k, dnnl_primitive_attr_t *attr) {
    dnnl_post_ops_t ops = NULL;
    dnnl_status_t st = cpu_dnnl_user_scratchpad(attr);
    if (st == dnnl_success && k->accumulate) {
        st = dnnl_post_ops_create(&ops);
        if (st == dnnl_success) st = dnnl_post_ops_append_sum(ops, 1.0f);
        if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(*attr, ops);
    }
    if (ops) dnnl_post_ops_destroy(ops);
    return st;
}

static void plan_free(void *plan) {
    GemmPlan *p = plan;
    if (!p) return;
    if (p->to_a) dnnl_primitive_destroy(p->to_a);
    if (p->to_b) dnnl_primitive_destroy(p->to_b);
    if (p->matmul) dnnl_primitive_destroy(p->matmul);
    free(p);
}

static void *plan_make(const void *key) {
    const GemmKey *k = key;
    GemmPlan *p = calloc(1, sizeof *p);
    if (!p) return error_set("matmul: out of memory for a oneDNN plan"), NULL;
    descs(k, p);
    dnnl_engine_t engine = cpu_dnnl_engine();
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_matmul_desc_t d;
    dnnl_status_t st = engine ? attributes(k, &attr) : dnnl_runtime_error;
    if (st == dnnl_success) st = dnnl_matmul_desc_init(&d, &p->a_in, &p->b_in, NULL, &p->c);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &d, attr, engine, NULL);
    if (st == dnnl_success) {
        p->scratch = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        st = dnnl_primitive_create(&p->matmul, pd);
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    int rc = st == dnnl_success ? 0 : cpu_dnnl_failed(st, "matmul");
    if (rc == 0 && (cpu_dnnl_reorder(&p->a, &p->a_in, &p->to_a) != 0 ||
                    cpu_dnnl_reorder(&p->b, &p->b_in, &p->to_b) != 0))
        rc = -1;
    if (rc != 0) {
        plan_free(p);
        return NULL;
    }
    return p;
}

static DnnlPlanCache plans = DNNL_PLAN_CACHE_INIT;

/* The arena: the scratchpad and, in bf16, the operands' copies. */
static size_t arena_bytes(const GemmPlan *p) {
    size_t copies = p->to_a ? cpu_dnnl_arena_bytes(dnnl_memory_desc_get_size(&p->a_in)) : 0;
    if (p->to_b) copies += cpu_dnnl_arena_bytes(dnnl_memory_desc_get_size(&p->b_in));
    return cpu_dnnl_arena_bytes(dnnl_memory_desc_get_size(&p->scratch)) + copies;
}

/* The operand the matmul reads: op itself, or its copy made by `to`. */
static dnnl_memory_t operand(DnnlCall *call, dnnl_primitive_t to, const dnnl_memory_desc_t *md,
                             const dnnl_memory_desc_t *md_in, const float *op) {
    dnnl_memory_t m = cpu_dnnl_call_memory(call, md, (void *)op);
    if (!m || !to) return m;
    dnnl_memory_t copy = cpu_dnnl_call_memory(call, md_in, NULL);
    if (!copy || cpu_dnnl_reorder_run(call->stream, to, m, copy) != 0) return NULL;
    return copy;
}

static int run(const GemmPlan *p, const float *a, const float *b, float *c) {
    DnnlCall call;
    if (cpu_dnnl_call_open(&call, arena_bytes(p)) != 0) return -1;
    dnnl_memory_t ma = operand(&call, p->to_a, &p->a, &p->a_in, a);
    dnnl_memory_t mb = ma ? operand(&call, p->to_b, &p->b, &p->b_in, b) : NULL;
    dnnl_memory_t mc = cpu_dnnl_call_memory(&call, &p->c, c);
    dnnl_memory_t ms = cpu_dnnl_call_memory(&call, &p->scratch, NULL);
    int rc = ma && mb && mc && ms ? 0 : -1;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, ma},
                               {DNNL_ARG_WEIGHTS, mb},
                               {DNNL_ARG_DST, mc},
                               {DNNL_ARG_SCRATCHPAD, ms}};
    if (rc == 0) rc = cpu_dnnl_execute(p->matmul, call.stream, 4, args, "matmul");
    return cpu_dnnl_call_close(&call, rc);
}

int cpu_gemm_dnnl(dnnl_data_type_t in, bool trans_a, bool trans_b, int64_t m, int64_t n,
                  int64_t k, double alpha, const float *a, int64_t lda, const float *b,
                  int64_t ldb, double beta, float *c, int64_t ldc) {
    if (alpha != 1 || (beta != 0 && beta != 1))
        return error_set("matmul: oneDNN's takes alpha 1 and beta 0 or 1, not %g and %g", alpha,
                         beta);
    GemmKey key;
    memset(&key, 0, sizeof key); /* padding too: keys are compared as bytes */
    key.in = in, key.trans_a = trans_a, key.trans_b = trans_b, key.accumulate = beta == 1;
    key.m = m, key.n = n, key.k = k, key.lda = lda, key.ldb = ldb, key.ldc = ldc;
    bool owned;
    GemmPlan *p = cpu_dnnl_plan(&plans, &key, sizeof key, plan_make, plan_free, &owned);
    int rc = p ? run(p, a, b, c) : -1;
    if (owned) plan_free(p);
    return rc;
}
