/* gemm_bf16.c - float32 matrix products under "precision": "bf16" on the
 * CPU: both operands rounded to bfloat16 (round to nearest even, oneDNN's
 * reorder), the products accumulated and written in float32 (oneDNN's
 * matmul: brgemm on AVX512-BF16 or AMX), C's old values added in float32
 * for beta 1. The GPU's bf16 (CUBLAS_COMPUTE_32F_FAST_16BF) computes the
 * same, and so do autocast's bf16 matmuls up to their bf16 outputs.
 *
 * Every float32 product of a thread in bf16 goes here, whatever its size,
 * so a job's arithmetic does not depend on its shapes. A plan per shape
 * (the transposes, sizes, row strides and beta): the two reorders into
 * bf16 copies from the call's arena, and the matmul. Measured on 2 Zen 4
 * cores (AVX512-BF16), with other work on the machine: GPT-2's QKV product
 * [1024, 768] x [768, 2304] 18 ms against float32's 34 in oneDNN, its
 * vocabulary head 322 against 550; a whole GPT-2 small step 7.6-7.9 s
 * against 9.3-9.5 in float32.
 */
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "core/cpu/dnnl.h"
#include "core/error.h"

typedef struct {
    bool trans_a, trans_b, accumulate;
    int64_t m, n, k, lda, ldb, ldc;
} GemmKey;

typedef struct {
    dnnl_primitive_t to_a, to_b, matmul;
    dnnl_memory_desc_t a, b, a16, b16, c, scratch;
} GemmPlan;

/* Row-major a [m, k] (stored [k, m] when transposed) and b [k, n] (stored
 * [n, k]) as strides over the logical matrices; their dense bf16 copies;
 * c [m, n]. */
static void descs(const GemmKey *k, GemmPlan *p) {
    dnnl_dims_t ad = {k->m, k->k}, bd = {k->k, k->n}, cd = {k->m, k->n};
    dnnl_dims_t as = {k->trans_a ? 1 : k->lda, k->trans_a ? k->lda : 1};
    dnnl_dims_t bs = {k->trans_b ? 1 : k->ldb, k->trans_b ? k->ldb : 1};
    dnnl_dims_t cs = {k->ldc, 1};
    dnnl_memory_desc_init_by_strides(&p->a, 2, ad, dnnl_f32, as);
    dnnl_memory_desc_init_by_strides(&p->b, 2, bd, dnnl_f32, bs);
    dnnl_memory_desc_init_by_strides(&p->c, 2, cd, dnnl_f32, cs);
    dnnl_memory_desc_init_by_tag(&p->a16, 2, ad, dnnl_bf16, dnnl_ab);
    dnnl_memory_desc_init_by_tag(&p->b16, 2, bd, dnnl_bf16, dnnl_ab);
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
    if (st == dnnl_success) st = dnnl_matmul_desc_init(&d, &p->a16, &p->b16, NULL, &p->c);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &d, attr, engine, NULL);
    if (st == dnnl_success) {
        p->scratch = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        st = dnnl_primitive_create(&p->matmul, pd);
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    int rc = st == dnnl_success ? 0 : cpu_dnnl_failed(st, "bf16 matmul");
    if (rc == 0)
        rc = cpu_dnnl_reorder(&p->a, &p->a16, &p->to_a) ||
             cpu_dnnl_reorder(&p->b, &p->b16, &p->to_b);
    if (rc != 0) {
        plan_free(p);
        return NULL;
    }
    return p;
}

static DnnlPlanCache plans = DNNL_PLAN_CACHE_INIT;

static size_t arena_bytes(const GemmPlan *p) {
    return cpu_dnnl_arena_bytes(dnnl_memory_desc_get_size(&p->scratch)) +
           cpu_dnnl_arena_bytes(dnnl_memory_desc_get_size(&p->a16)) +
           cpu_dnnl_arena_bytes(dnnl_memory_desc_get_size(&p->b16));
}

static int run(const GemmPlan *p, const float *a, const float *b, float *c) {
    DnnlCall call;
    if (cpu_dnnl_call_open(&call, arena_bytes(p)) != 0) return -1;
    dnnl_memory_t ma = cpu_dnnl_call_memory(&call, &p->a, (void *)a);
    dnnl_memory_t mb = cpu_dnnl_call_memory(&call, &p->b, (void *)b);
    dnnl_memory_t ma16 = cpu_dnnl_call_memory(&call, &p->a16, NULL);
    dnnl_memory_t mb16 = cpu_dnnl_call_memory(&call, &p->b16, NULL);
    dnnl_memory_t mc = cpu_dnnl_call_memory(&call, &p->c, c);
    dnnl_memory_t ms = cpu_dnnl_call_memory(&call, &p->scratch, NULL);
    int rc = ma && mb && ma16 && mb16 && mc && ms ? 0 : -1;
    if (rc == 0) rc = cpu_dnnl_reorder_run(call.stream, p->to_a, ma, ma16);
    if (rc == 0) rc = cpu_dnnl_reorder_run(call.stream, p->to_b, mb, mb16);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, ma16},
                               {DNNL_ARG_WEIGHTS, mb16},
                               {DNNL_ARG_DST, mc},
                               {DNNL_ARG_SCRATCHPAD, ms}};
    if (rc == 0) rc = cpu_dnnl_execute(p->matmul, call.stream, 4, args, "bf16 matmul");
    return cpu_dnnl_call_close(&call, rc);
}

int cpu_gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                  const float *a, int64_t lda, const float *b, int64_t ldb, double beta, float *c,
                  int64_t ldc) {
    if (alpha != 1 || (beta != 0 && beta != 1))
        return error_set("bf16 matmul: alpha %g and beta %g (only 1 and 0 or 1)", alpha, beta);
    GemmKey key;
    memset(&key, 0, sizeof key); /* padding too: keys are compared as bytes */
    key.trans_a = trans_a, key.trans_b = trans_b, key.accumulate = beta == 1;
    key.m = m, key.n = n, key.k = k, key.lda = lda, key.ldb = ldb, key.ldc = ldc;
    bool owned;
    GemmPlan *p = cpu_dnnl_plan(&plans, &key, sizeof key, plan_make, plan_free, &owned);
    int rc = p ? run(p, a, b, c) : -1;
    if (owned) plan_free(p);
    return rc;
}
