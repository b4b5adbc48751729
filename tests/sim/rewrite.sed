# rewrite.sed - a kernel file of gpu/ made C++ for tests/sim/cuda_sim.h:
# launches call operator*, dynamic shared memory is the launch's buffer, a
# static shared array (one a declaration) a static that registers itself
# for cuda_sim.h to fill with NaNs at each block's start. A __shared__ left
# over names an undefined macro: a form this file does not know fails to
# compile rather than passing unpoisoned.
s/<<</ * sim_config(/g
s/>>>/)/g
s/extern __shared__ __align__\(([0-9]+)\) ([a-z ]*[a-z]) ([a-z_]+)\[\];/\2 *\3 = (\2 *)sim_dynamic_shared();/
s/^([[:space:]]*)__shared__ ([A-Za-z_0-9 ]+) ([A-Za-z_][A-Za-z_0-9]*)((\[[^]]*\])+);/\1static \2 \3\4; sim_shared_static(\3, sizeof \3);/
