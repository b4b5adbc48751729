/* blas_lib.c - loads cuBLASLt and cuBLAS (gpu/blas_lib.h says why at run
 * time, not at link time) and binds gpu_blas to their functions. The
 * libraries are found by their sonames, as the linker would have found
 * them: the binary's run path (the toolkit's lib64), LD_LIBRARY_PATH, the
 * system's cache.
 */
#include "gpu/blas_lib.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "gpu/kernels.h"

#define GPU_BLAS_SONAME_OF(name, major) "lib" name ".so." #major
#define GPU_BLAS_SONAME(name, major) GPU_BLAS_SONAME_OF(name, major)
#define GPU_BLAS_STRING_OF(f) #f
#define GPU_BLAS_STRING(f) GPU_BLAS_STRING_OF(f)

GpuBlasLib gpu_blas;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_error[512]; /* empty once both libraries are bound */

/* dlsym's answer into *slot; false, saying which function of which
 * library, when it has none. */
static bool bind(void *lib, const char *soname, const char *symbol, void *slot) {
    void *f = dlsym(lib, symbol);
    if (!f) {
        snprintf(load_error, sizeof load_error, "%s has no %s", soname, symbol);
        return false;
    }
    *(void **)slot = f;
    return true;
}

static void *open_library(const char *soname) {
    void *lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!lib) snprintf(load_error, sizeof load_error, "%s", dlerror());
    return lib;
}

/* f's symbol is its expanded name: cublasSgemm's is cublasSgemm_v2. */
#define GPU_BLAS_BIND(f) ok = ok && bind(lib, soname, GPU_BLAS_STRING(f), &gpu_blas.f);

static void load(void) {
    /* cuBLASLt first: cuBLAS needs it, and is then found already loaded */
    const char *soname = GPU_BLAS_SONAME("cublasLt", CUBLAS_VER_MAJOR);
    void *lib = open_library(soname);
    bool ok = lib != NULL;
    GPU_CUBLASLT_FUNCTIONS(GPU_BLAS_BIND)
    if (!ok) return;
    soname = GPU_BLAS_SONAME("cublas", CUBLAS_VER_MAJOR);
    lib = open_library(soname);
    ok = lib != NULL;
    GPU_CUBLAS_FUNCTIONS(GPU_BLAS_BIND)
}

bool gpu_blas_load(const char *where) {
    pthread_once(&load_once, load);
    if (load_error[0]) {
        gpu_record_msg(load_error, where);
        return false;
    }
    return true;
}
