/* test_gpu_blas_lib.c - cuBLAS and cuBLASLt are loaded at the first
 * product, not with the binary (gpu/blas_lib.h): a process that has made
 * none has neither, and the loader binds every function the backend
 * calls. Needs a CUDA build (the toolkit's libraries), not a device.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>

#ifdef TRAIND_CUDA
#include "gpu/blas_lib.h"
#include "gpu/gpu.h"

#define SONAME_OF(name, major) "lib" name ".so." #major
#define SONAME(name, major) SONAME_OF(name, major)

static bool loaded(const char *soname) {
    void *lib = dlopen(soname, RTLD_LAZY | RTLD_NOLOAD);
    if (lib) dlclose(lib);
    return lib != NULL;
}

#define ASSERT_BOUND(f) cr_assert_not_null((void *)gpu_blas.f, "%s is not bound", #f);
#endif

Test(gpu_blas_lib, loaded_at_the_first_product_and_every_function_bound) {
#ifndef TRAIND_CUDA
    cr_skip_test("no CUDA device: this build has no CUDA backend (make GPU=0 or no nvcc)");
#else
    const char *lt = SONAME("cublasLt", CUBLAS_VER_MAJOR);
    const char *blas = SONAME("cublas", CUBLAS_VER_MAJOR);
    cr_assert(!loaded(lt) && !loaded(blas), "%s or %s loaded with the binary", lt, blas);
    gpu_clear_error();
    cr_assert(gpu_blas_load("test"), "load failed: %s", gpu_last_error());
    cr_assert(loaded(lt) && loaded(blas), "%s and %s not loaded", lt, blas);
    GPU_CUBLAS_FUNCTIONS(ASSERT_BOUND)
    GPU_CUBLASLT_FUNCTIONS(ASSERT_BOUND)
    cr_assert(gpu_blas_load("test"), "a second load gives the first answer");
    cr_assert_null(gpu_last_error());
#endif
}
