/* isa.c - which of the CPU backend's hand-vectorised kernels run: the
 * AVX-512 ones (pool_blocked.c, conv_block_wgrad.c, channel.c) where the
 * processor has AVX-512F, else the portable ones, which tests can also ask
 * for on an AVX-512 machine. The build targets baseline x86-64, so these
 * kernels choose at run time. */
#include <stdatomic.h>

#include "core/cpu/cpu.h"

static atomic_bool portable_only;

void cpu_kernels_portable(bool on) {
    atomic_store(&portable_only, on);
}

bool cpu_avx512(void) {
    return !atomic_load(&portable_only) && __builtin_cpu_supports("avx512f");
}
