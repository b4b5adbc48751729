/* cuda_runtime_api.h - tests/sim's stand-in: see cuda_runtime.h beside it. */
#include "cuda_runtime.h"
