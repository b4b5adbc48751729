# traind - build, test, bench.
#
#   make            build/traind (and build/libtraind.a)
#   make test       install missing Debian packages, build, run every test
#   make bench      benchmarks, JSON lines on stdout
#   make GPU=0      never build the CUDA backend (default: auto-detect nvcc)
#   make bench-gpu  GPU benchmarks beside PyTorch CUDA (skips without a GPU)
#   make bench-dashboard  the run page in chromium (part of make bench)
#
# Tests are built a second time with AddressSanitizer + UBSan (LeakSanitizer
# included), in build/asan, so `make test` is also the leak check.

SHELL   := /bin/bash
CC      ?= cc
CFLAGS  ?= -O2 -g -fvect-cost-model=dynamic
WARN    := -Wall -Wextra -Werror -Wno-unused-parameter
STD     := -std=c11 -D_GNU_SOURCE
INC     := -I. -I/usr/include/x86_64-linux-gnu
DEPFLAGS = -MMD -MP
# OpenBLAS's OpenMP build: GEMM and our own parallel loops (core/cpu) share
# one OpenMP thread pool instead of two pools spinning against each other.
OPENBLAS_DIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
OMP     := -fopenmp
# Open MPI (dist/mpi.c): a job's ranks under mpirun or srun.
MPI_INC  := $(shell pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS := $(shell pkg-config --libs ompi-c 2>/dev/null)
LIBS    := -L$(OPENBLAS_DIR) -Wl,-rpath,$(OPENBLAS_DIR) -lopenblas -ljansson -lz -lm -lpthread -lgnutls -lcurl -lsqlite3 \
           -lpng -ljpeg -larchive -ldnnl $(MPI_LIBS)
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# CUDA backend (gpu/): built when nvcc is found ($(CUDA_HOME)/bin, PATH, or
# /usr/local/cuda/bin) unless GPU=0. Kernels target sm_90 (H100/H200) plus
# compute_90 PTX that newer GPUs JIT; --fmad=false keeps elementwise and
# optimizer arithmetic rounding as the CPU backend's (see gpu/kernels/common.cuh).
GPU     ?= auto
ifeq ($(GPU),0)
NVCC    :=
else
NVCC    ?= $(firstword $(wildcard $(CUDA_HOME)/bin/nvcc) $(shell command -v nvcc 2>/dev/null) \
                       $(wildcard /usr/local/cuda/bin/nvcc))
endif
ifneq ($(strip $(NVCC)),)
# the toolkit nvcc belongs to (CUDA_HOME when that is where it was found)
CUDA_ROOT := $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_LIB  := $(CUDA_ROOT)/lib64
NVCCFLAGS := -O2 -g -std=c++17 -gencode arch=compute_90,code=sm_90 \
             -gencode arch=compute_90,code=compute_90 --fmad=false \
             -Xcompiler -Wall,-Wextra,-Werror -Werror all-warnings
GPU_C_SRC  := $(shell find gpu -name '*.c' | sort)
GPU_CU_SRC := $(shell find gpu -name '*.cu' ! -name 'bench_*' | sort)
GPU_CU_OBJ := $(GPU_CU_SRC:%.cu=build/obj/%.cu.o)
GPU_OBJ    := $(GPU_C_SRC:%.c=build/obj/%.o) $(GPU_CU_OBJ)
# nvcc objects are not sanitised; gpu/backend.c is.
ASAN_GPU   := $(GPU_C_SRC:%.c=build/asan/%.o) $(GPU_CU_OBJ)
STD     += -DTRAIND_CUDA=1
GPU_LIBS := -L$(CUDA_LIB) -Wl,-rpath,$(CUDA_LIB) -lcudnn -lnccl -lcudart -ldl -lstdc++
# CUDA under ASan needs the shadow gap unprotected; the driver's own
# allocations at exit are not our leaks.
GPU_ASAN_OPTIONS := :protect_shadow_gap=0
GPU_LSAN := LSAN_OPTIONS=suppressions=$(CURDIR)/gpu/lsan.supp
# cuBLAS and cuBLASLt are not linked: gpu/blas_lib.c loads them at the first
# product (see gpu/blas_lib.h). It and gpu/conv_cudnn.c are C that include
# the toolkit's headers (cublasLt.h, cudnn.h, and with them cuda_runtime_api.h).
build/obj/gpu/conv_cudnn.o build/asan/gpu/conv_cudnn.o \
build/obj/gpu/blas_lib.o build/asan/gpu/blas_lib.o \
build/obj/tests/unit/test_gpu_blas_lib.o build/asan/tests/unit/test_gpu_blas_lib.o: \
    INC += -I$(CUDA_ROOT)/include
endif

# Files that test TRAIND_CUDA are rebuilt when the CUDA choice changes
# (make vs make GPU=0 in one build directory).
GPU_STAMP := build/gpu-config.stamp
GPU_STAMP_TEXT := cuda=$(if $(strip $(NVCC)),$(NVCC),none)
$(shell mkdir -p build; [ "$$(cat $(GPU_STAMP) 2>/dev/null)" = "$(GPU_STAMP_TEXT)" ] || \
        echo "$(GPU_STAMP_TEXT)" > $(GPU_STAMP))

CORE_SRC   := $(shell find core -name '*.c' | sort)
SERVER_SRC := $(shell find job server dist -name '*.c' | sort)
# tests/fuzz: libFuzzer targets, built by clang (tests/fuzz/fuzz.mk)
# tests/dist: programs run as MPI ranks (their own main), not unit tests
TEST_SRC   := $(shell find tests -path tests/fuzz -prune -o -path tests/dist -prune -o -name '*.c' -print | sort)
STORAGE_SRC := $(shell find storage -name '*.c' | sort)

CORE_OBJ   := $(CORE_SRC:%.c=build/obj/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=build/obj/%.o)
ASAN_CORE  := $(CORE_SRC:%.c=build/asan/%.o)
ASAN_TEST  := $(TEST_SRC:%.c=build/asan/%.o)
ASAN_SERVER := $(SERVER_SRC:%.c=build/asan/%.o)
STORAGE_OBJ := $(STORAGE_SRC:%.c=build/obj/%.o)
ASAN_STORAGE := $(STORAGE_SRC:%.c=build/asan/%.o)
# The unit tests link the daemon's layers too (storage, scheduler), all but main().
ASAN_SERVER_LIB := $(filter-out build/asan/server/main.o,$(ASAN_SERVER))

.PHONY: all run test test-only test-sim test-simdev test-e2e lint-api lint-web deps clean fixtures bench bench-gpu bench-models bench-gemm bench-dashboard docker-check \
        fuzz fuzz-smoke
all: build/traind

build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(STD) $(CFLAGS) $(OMP) $(WARN) $(INC) $(DEPFLAGS) -c $< -o $@

# only the MPI group sees mpi.h
build/obj/dist/%.o build/asan/dist/%.o: INC += $(MPI_INC)

build/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -I. -MMD -MP -c $< -o $@

GPU_AWARE_TESTS := $(shell grep -l TRAIND_CUDA tests/unit/*.c tests/support/*.c)
build/obj/server/main.o build/asan/server/main.o build/obj/job/rank.o build/asan/job/rank.o \
    $(GPU_AWARE_TESTS:%.c=build/obj/%.o) $(GPU_AWARE_TESTS:%.c=build/asan/%.o): $(GPU_STAMP)

build/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(STD) -O1 -g $(SAN) $(OMP) $(WARN) $(INC) $(DEPFLAGS) -c $< -o $@

# The dashboard's files (web/), built into the daemon as C arrays: one
# object, without sanitizers (it is data), linked by every build of the server.
WEB_FILES := $(sort $(wildcard web/*.html web/*.js web/*.css web/vendor/*))
WEB_OBJ   := build/gen/web_assets.o
build/gen/web_assets.c: $(WEB_FILES) scripts/embed_web.py
	@mkdir -p $(dir $@)
	python3 scripts/embed_web.py $@ $(WEB_FILES)
$(WEB_OBJ): build/gen/web_assets.c server/web_assets.h
	$(CC) $(STD) -O1 $(WARN) $(INC) -c $< -o $@

build/libtraind.a: $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

build/traind: $(SERVER_OBJ) $(STORAGE_OBJ) $(GPU_OBJ) $(WEB_OBJ) build/libtraind.a
	$(CC) $(CFLAGS) $(OMP) -o $@ $(SERVER_OBJ) $(STORAGE_OBJ) $(GPU_OBJ) $(WEB_OBJ) build/libtraind.a \
	    $(LIBS) $(GPU_LIBS)

build/tests/unit: $(ASAN_TEST) $(ASAN_CORE) $(ASAN_STORAGE) $(ASAN_SERVER_LIB) $(ASAN_GPU) $(WEB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(SAN) $(OMP) -o $@ $^ -lcriterion $(LIBS) $(GPU_LIBS)

# The same tests without sanitizers (-O2): for a GPU machine, where they run
# beside the ASan build (gpu/check.sh), and for timing a test by itself.
build/tests/unit-nosan: $(TEST_SRC:%.c=build/obj/%.o) $(CORE_OBJ) $(STORAGE_OBJ) \
        $(filter-out build/obj/server/main.o,$(SERVER_OBJ)) $(GPU_OBJ) $(WEB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(OMP) -o $@ $^ -lcriterion $(LIBS) $(GPU_LIBS)

# The collective ops' float64 gradient checks, run as MPI ranks by
# tests/e2e/test_data_parallel.sh (mpirun -np 3).
build/tests/gradcheck_dist: build/asan/tests/dist/gradcheck_dist.o build/asan/dist/mpi.o $(ASAN_CORE) \
        $(ASAN_GPU)
	@mkdir -p $(dir $@)
	$(CC) $(SAN) $(OMP) -o $@ $^ $(LIBS) $(GPU_LIBS)

# traind itself under ASan + UBSan, for the command-line tests in tests/e2e.
build/traind-asan: $(ASAN_SERVER) $(ASAN_STORAGE) $(ASAN_CORE) $(ASAN_GPU) $(WEB_OBJ)
	$(CC) $(SAN) $(OMP) -o $@ $^ $(LIBS) $(GPU_LIBS)

deps:
	@scripts/install-deps.sh

# The daemon on 127.0.0.1:8080 with its data in ./var.
run: deps
	$(MAKE) all
	build/traind serve --port 8080 --bind 127.0.0.1 --data-dir ./var

# Unit tests (scripts/run-unit-tests.sh: Criterion under the sanitizers,
# failing on any sanitizer report), the fuzz targets' smoke run
# (tests/fuzz/fuzz.mk), the OpenAPI lint, then the e2e scripts.
# A test that skips says why where it skips and in build/skips.log, which
# the run lists, with their count, at its end, and fails on a skip that no
# machine's set-up explains (scripts/check-skips.sh). What a phase runs is built
# before it on both cores (CI's machine has 2): the tests themselves run
# one phase at a time.
test: export TRAIND_SKIP_LOG := $(CURDIR)/build/skips.log
test: deps
	$(MAKE) -j2 all build/tests/unit build/traind-asan
	@rm -f build/skips.log
	$(MAKE) test-only
	@$(MAKE) -j2 --no-print-directory $(SIM_TESTS) build/tests/unit-simdev build/traind-simdev \
	    build/tests/gradcheck_dist $(FUZZ_BINS)
	@$(MAKE) --no-print-directory test-sim
	@$(MAKE) --no-print-directory test-simdev
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory lint-api
	@$(MAKE) --no-print-directory lint-web
	@$(MAKE) --no-print-directory test-e2e
	@touch build/skips.log; echo "make test: $$(wc -l <build/skips.log) skipped"; cat build/skips.log
	@scripts/check-skips.sh build/skips.log

test-only:
	OMP_WAIT_POLICY=passive $(GPU_LSAN) \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1$(GPU_ASAN_OPTIONS) \
	    UBSAN_OPTIONS=print_stacktrace=1 scripts/run-unit-tests.sh $(TEST_ARGS)

# GPU kernel files run on the CPU: tests/sim/rewrite.sed turns a file of
# gpu/kernels (and the headers beside it) into C++ for tests/sim/cuda_sim.h
# (a thread for each of a block's threads, barriers for __syncthreads and a
# warp's shuffles), linked with a test that compares its launchers with
# their definitions in double, under ASan and UBSan: what of the GPU's code
# a machine without one can check (tests/unit/test_gpu_*.c need one).
# tests/sim/test_NAME.cpp tests gpu/kernels/NAME.cu.
SIM_TESTS := $(patsubst tests/sim/test_%.cpp,build/tests/sim_%,$(wildcard tests/sim/test_*.cpp))
SIM_HEADERS := $(patsubst gpu/kernels/%,build/sim/gpu/kernels/%,$(wildcard gpu/kernels/*.cuh))
# (gpu_blocks' caps lowered: every grid-stride loop goes round more than once)
SIM_CXX := $(CXX) -std=c++17 -O1 -g -Wall -Wextra -Werror -Wno-unknown-pragmas $(SAN) -pthread \
           -DGPU_BLOCKS_MAX=3 -DGPU_WARP_BLOCKS_MAX=2 -include tests/sim/cuda_sim.h \
           -Ibuild/sim -Itests/sim/include -I. $(DEPFLAGS)
SIM_DEPS := $(SIM_HEADERS) $(wildcard tests/sim/*.h tests/sim/include/*.h gpu/kernels/*.h) \
            gpu/kernels.h gpu/stream.h

build/sim/gpu/%.cu.cpp: gpu/%.cu tests/sim/rewrite.sed
	@mkdir -p $(dir $@)
	sed -E -f tests/sim/rewrite.sed $< >$@.tmp && mv $@.tmp $@

build/sim/gpu/kernels/%.cuh: gpu/kernels/%.cuh tests/sim/rewrite.sed
	@mkdir -p $(dir $@)
	sed -E -f tests/sim/rewrite.sed $< >$@.tmp && mv $@.tmp $@

build/sim/%.o: build/sim/%.cpp $(SIM_DEPS)
	$(SIM_CXX) -c $< -o $@

build/sim/%.o: tests/sim/%.cpp $(SIM_DEPS)
	@mkdir -p $(dir $@)
	$(SIM_CXX) -c $< -o $@

build/tests/sim_%: build/sim/test_%.o build/sim/gpu/kernels/%.cu.o build/sim/runtime.o \
                   build/sim/fiber_switch.o
	@mkdir -p $(dir $@)
	$(SIM_CXX) -o $@ $^

# kept between runs (make deletes a chain's intermediate files otherwise)
SIM_NAMES := $(patsubst tests/sim/test_%.cpp,%,$(wildcard tests/sim/test_*.cpp))
SIM_CU := $(filter-out gpu/bench_%,$(wildcard gpu/*.cu gpu/kernels/*.cu))
.SECONDARY: $(SIM_HEADERS) $(SIM_NAMES:%=build/sim/test_%.o) build/sim/runtime.o \
            build/sim/fiber_switch.o \
            $(SIM_CU:%.cu=build/sim/%.cu.o) $(SIM_CU:%.cu=build/sim/%.cu.cpp)
-include $(shell find build/sim -name '*.d' 2>/dev/null)

# what a test links besides its kernel file: embedding's backward zeroes
# with layout.cu's fill; attention.cu hands heads to attention_tiled.cu;
# random's reference is core/rng.c's Philox
build/tests/sim_embedding: build/sim/gpu/kernels/layout.cu.o
build/tests/sim_attention: build/sim/gpu/kernels/attention_tiled.cu.o
build/tests/sim_random: build/sim/core/rng.o

build/sim/core/%.o: core/%.c core/%.h
	@mkdir -p $(dir $@)
	$(CC) $(STD) $(CFLAGS) $(WARN) $(SAN) -I. -c $< -o $@

test-sim: $(SIM_TESTS)
	@ok=0; for t in $(SIM_TESTS); do $$t || ok=1; done; exit $$ok

# The simulated device (tests/sim/device): the whole CUDA backend, gpu/'s
# C files and every .cu file rewritten as above, against a CUDA runtime,
# cuBLAS, cuBLASLt, cuDNN and NCCL that run on the CPU, linked with the
# GPU's unit tests (tests/unit/test_gpu*.c), which find a device and run.
# (gpu/blas_lib.c's table is bound by tests/sim/device/blas_lib.cpp instead)
SIMDEV_C   := $(filter-out gpu/blas_lib.c,$(wildcard gpu/*.c)) \
              $(shell grep -l test_need_gpu tests/unit/*.c) $(wildcard tests/support/*.c)
SIMDEV_OBJ := $(SIMDEV_C:%.c=build/simdev/%.o) $(SIM_CU:%.cu=build/sim/%.cu.o) \
              $(patsubst tests/sim/%.cpp,build/sim/%.o,$(wildcard tests/sim/device/*.cpp)) \
              build/sim/fiber_switch.o
build/simdev/%.o: %.c $(wildcard tests/sim/include/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(STD) -DTRAIND_CUDA=1 -O1 -g $(SAN) $(OMP) $(WARN) -Itests/sim/include $(INC) \
	    $(DEPFLAGS) -c $< -o $@
build/tests/unit-simdev: $(SIMDEV_OBJ) $(ASAN_CORE) $(ASAN_STORAGE) $(ASAN_SERVER_LIB) $(WEB_OBJ)
	@mkdir -p $(dir $@)
	$(CXX) $(SAN) $(OMP) -pthread -o $@ $^ -lcriterion $(LIBS)

# traind itself on the simulated device (as build/traind-asan, but its
# CUDA backend is the simulated device's): the e2e scripts' cuda jobs, a
# daemon with a GPU worker, and data parallel over NCCL with several ranks
# (tests/sim/device/nccl.cpp), in CI (tests/e2e/test_simdev.sh).
build/traind-simdev: build/simdev/server/main.o build/simdev/job/rank.o \
        $(filter-out build/asan/server/main.o build/asan/job/rank.o,$(ASAN_SERVER)) \
        $(ASAN_STORAGE) $(ASAN_CORE) $(filter-out build/simdev/tests/%,$(SIMDEV_OBJ)) $(WEB_OBJ)
	$(CXX) $(SAN) $(OMP) -pthread -o $@ $^ $(LIBS)

test-simdev: build/tests/unit-simdev
	OMP_WAIT_POLICY=passive ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 TRAIND_REQUIRE_GPU=1 \
	    UBSAN_OPTIONS=print_stacktrace=1 UNIT_TESTS=build/tests/unit-simdev \
	    scripts/run-unit-tests.sh $(TEST_ARGS)

# Whole `traind run` jobs: parity with PyTorch (tests/fixtures/jobs, from
# gen_jobs.py) and bad input under ASan; the HTTP API against the real
# daemon under ASan (test_api.sh); users' privacy, sharing and quotas
# (test_privacy.sh); token data uploads, their vocabulary and windows
# (test_tokens.sh); kill -9 and resume, cancel, two workers,
# SSE resume, /metrics (test_daemon.sh); one daemon per data dir and port,
# JSON errors, limits, slow and idle clients, TLS (test_edge.sh, built
# without ASan: it times replies under load); the fair queue, its reasons,
# quotas and preemption (test_queue.sh, without ASan: its preempted job
# must still be running when the urgent one comes); api-docs/README.md's curl
# walkthrough, run verbatim (test_walkthrough.sh); a full disk under uploads,
# imports, checkpoints and SQLite (test_faults.sh, root: a tmpfs data dir);
# over 200 hostile requests on every route while another user's job trains
# (test_hostile.sh); the dashboard in headless chromium, signing in, each
# user's runs, live progress, cancel, sort and filter (test_dashboard.sh);
# the dashboard's canvas chart on a test page of its own (test_chart.sh);
# one job as 1, 2 and 4 MPI ranks against PyTorch and itself
# (test_data_parallel.sh); ranks run outside the daemon reporting over HTTP
# (test_remote_report.sh, --executor external); a one-node Slurm started by
# the test, srun and the daemon's --executor slurm: sbatch, pending reasons,
# scancel, a requeue resumed (test_slurm.sh; test_slurm_cluster.sh, the
# cluster's own self-test, runs by hand); on the simulated device
# (build/traind-simdev), the fixture jobs on cuda against PyTorch
# (test_run_parity.sh with DEVICE=cuda), data parallel over NCCL on 2
# GPUs, its refusals and watchdog, and the daemon's GPU workers
# (test_simdev.sh). The API scripts check every response against api-docs/openapi.yaml
# (tests/e2e/openapi_check.mjs; openapi_selftest.sh shows it catches what it
# should). Each script ends
# "N passed, N failed" (those on tests/e2e/lib.sh ", N skipped" too).
test-e2e: build/traind build/traind-asan build/tests/gradcheck_dist build/traind-simdev
	@ok=0; tests/e2e/openapi_selftest.sh || ok=1; \
	tests/e2e/test_run_parity.sh build/traind || ok=1; \
	DEVICE=cuda tests/e2e/test_run_parity.sh build/traind-simdev || ok=1; \
	tests/e2e/test_simdev.sh build/traind-simdev || ok=1; \
	tests/e2e/test_run_errors.sh build/traind-asan || ok=1; \
	tests/e2e/test_run_cli.sh build/traind-asan || ok=1; \
	tests/e2e/test_local_mode.sh build/traind || ok=1; \
	tests/e2e/test_precision.sh build/traind || ok=1; \
	tests/e2e/test_data_parallel.sh build/traind build/traind-asan || ok=1; \
	tests/e2e/test_remote_report.sh build/traind-asan || ok=1; \
	tests/e2e/test_slurm.sh build/traind-asan || ok=1; \
	tests/e2e/test_models.sh build/traind || ok=1; \
	tests/e2e/test_api.sh build/traind-asan || ok=1; \
	tests/e2e/test_privacy.sh build/traind-asan || ok=1; \
	tests/e2e/test_daemon.sh build/traind-asan || ok=1; \
	tests/e2e/test_users.sh build/traind-asan || ok=1; \
	tests/e2e/test_imports.sh build/traind-asan || ok=1; \
	tests/e2e/test_tokens.sh build/traind-asan || ok=1; \
	tests/e2e/test_images.sh build/traind-asan || ok=1; \
	tests/e2e/test_faults.sh build/traind-asan || ok=1; \
	tests/e2e/test_hostile.sh build/traind-asan || ok=1; \
	tests/e2e/test_edge.sh build/traind || ok=1; \
	tests/e2e/test_queue.sh build/traind || ok=1; \
	tests/e2e/test_lab_readme.sh build/traind || ok=1; \
	tests/e2e/test_walkthrough.sh build/traind || ok=1; \
	tests/e2e/test_chart.sh || ok=1; \
	tests/e2e/test_dashboard.sh build/traind || ok=1; exit $$ok

# api-docs/openapi.yaml through Redocly's linter (pinned in
# api-docs/package.json); npm ci runs only when api-docs/node_modules is
# missing. No telemetry, no update check: the tests run offline.
lint-api:
	@if [ ! -d api-docs/node_modules ]; then npm ci --prefix api-docs --no-audit --no-fund; fi
	cd api-docs && REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
	    node_modules/.bin/redocly lint --format=stylish openapi.yaml

# The dashboard's JS (web/*.js), its test and bench drivers through eslint
# (pinned in web/package.json; web/eslint.config.mjs: the recommended
# rules); a warning fails too. npm ci runs only when web/node_modules is
# missing.
lint-web:
	@if [ ! -d web/node_modules ]; then npm ci --prefix web --no-audit --no-fund; fi
	web/node_modules/.bin/eslint --config web/eslint.config.mjs --max-warnings 0 \
	    web/*.js web/eslint.config.mjs tests/e2e/dashboard.mjs tests/e2e/run_page.mjs \
	    tests/e2e/chart_test/*.js tests/e2e/chart_test/*.mjs bench/dashboard.mjs

# MNIST MLP and CNN, traind and (where torch imports) PyTorch side by side;
# JSON lines on stdout. Needs ../shared/datasets/mnist (skips without it).
# Then the API under wrk load while a job trains (bench-api, bench/api.sh;
# installs Debian's wrk when missing), twice: every thread on every core
# (the default daemon), then --http-cpus on the last CPU with wrk beside it
# (HTTP_CPUS=last; skipped on one CPU). Then the dashboard (bench-dashboard).
bench: build/traind
	@bench/run.sh
	@$(MAKE) --no-print-directory bench-gemm
	@$(MAKE) --no-print-directory bench-models
	@$(MAKE) --no-print-directory bench-api
	@$(MAKE) --no-print-directory bench-dashboard

# ResNet-18 (32x32, batch 256) and GPT-2 small (block 1024) on the CPU beside
# PyTorch (torchvision's resnet18, nanoGPT's GPT): bench/models.sh.
bench-models: build/traind
	@bench/models.sh

# The models' float32 matrix products through OpenBLAS and oneDNN's matmul,
# and which one gemm.c picks (bench/gemm_cpu.c), 2 threads.
bench-gemm: build/bench_gemm_cpu
	@OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive GOMP_SPINCOUNT=10000 build/bench_gemm_cpu

build/bench_gemm_cpu: build/obj/bench/gemm_cpu.o build/libtraind.a
	$(CC) $(CFLAGS) $(OMP) -o $@ $^ $(LIBS)

# docker/Dockerfile's CPU image built with buildah (no Docker engine needed)
# and a job trained in a container of it (docker/check-image.sh). Needs root
# and Debian's mirror; not part of `make test`.
docker-check:
	@docker/check-image.sh

bench-api: build/traind
	@bench/api.sh
	@HTTP_CPUS=last bench/api.sh

# The run page in Debian's chromium, headless (bench/dashboard.sh and .mjs):
# navigation to the first drawn chart of a finished 1,000,000-step run (goal
# under 1 s), and the JS heap after following a 100,000-step run live (goal
# under 50 MB); both runs trained for real. Prints a "skipped" line without
# chromium or node.
bench-dashboard: build/traind
	@bench/dashboard.sh

# The GPU benchmark: MNIST MLP and CNN and a GEMM-heavy MLP on --device cuda
# beside PyTorch CUDA, and the cuBLAS sgemm peak (build/bench_gemm). Prints
# "skipped: no GPU" where there is none.
bench-gpu: build/traind $(if $(strip $(NVCC)),build/bench_gemm)
	@bench/gpu.sh

build/bench_gemm: gpu/bench_gemm.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -I. -o $@ $< -L$(CUDA_LIB) -Xlinker -rpath,$(CUDA_LIB) -lcublas

# Regenerate the PyTorch fixtures (needs Debian's python3-torch).
fixtures:
	for g in tests/fixtures/gen_*.py; do /usr/bin/python3 $$g || exit 1; done

clean:
	rm -rf build

include tests/fuzz/fuzz.mk

-include $(shell find build -name '*.d' 2>/dev/null)
