# rewrite.sed - a kernel file of gpu/ made C++ for tests/sim/cuda_sim.h:
# launches call operator*, dynamic shared memory is the launch's buffer.
s/<<</ * sim_config(/g
s/>>>/)/g
s/extern __shared__ __align__\(([0-9]+)\) ([a-z ]*[a-z]) ([a-z_]+)\[\];/\2 *\3 = (\2 *)sim_dynamic_shared();/
