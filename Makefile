# traind - build, test, bench.
#
#   make            build/traind (and build/libtraind.a)
#   make test       install missing Debian packages, build, run every test
#   make bench      benchmarks, JSON lines on stdout
#   make GPU=0      never build the CUDA backend (default: auto-detect nvcc)
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
LIBS    := -L$(OPENBLAS_DIR) -Wl,-rpath,$(OPENBLAS_DIR) -lopenblas -ljansson -lz -lm -lpthread -lmicrohttpd -lcurl -lsqlite3
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

CORE_SRC   := $(shell find core -name '*.c' | sort)
SERVER_SRC := $(shell find server -name '*.c' | sort)
TEST_SRC   := $(shell find tests -name '*.c' | sort)
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

.PHONY: all run test test-only test-e2e deps clean fixtures bench
all: build/traind

build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(STD) $(CFLAGS) $(OMP) $(WARN) $(INC) $(DEPFLAGS) -c $< -o $@

build/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(STD) -O1 -g $(SAN) $(OMP) $(WARN) $(INC) $(DEPFLAGS) -c $< -o $@

build/libtraind.a: $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

build/traind: $(SERVER_OBJ) $(STORAGE_OBJ) build/libtraind.a
	$(CC) $(CFLAGS) $(OMP) -o $@ $(SERVER_OBJ) $(STORAGE_OBJ) build/libtraind.a $(LIBS)

build/tests/unit: $(ASAN_TEST) $(ASAN_CORE) $(ASAN_STORAGE) $(ASAN_SERVER_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(SAN) $(OMP) -o $@ $^ -lcriterion $(LIBS)

# traind itself under ASan + UBSan, for the command-line tests in tests/e2e.
build/traind-asan: $(ASAN_SERVER) $(ASAN_STORAGE) $(ASAN_CORE)
	$(CC) $(SAN) $(OMP) -o $@ $^ $(LIBS)

deps:
	@scripts/install-deps.sh

# The daemon on 127.0.0.1:8080 with its data in ./var.
run: deps
	$(MAKE) all
	build/traind serve --port 8080 --bind 127.0.0.1 --data-dir ./var

# Criterion forks one process per test. A leak is reported when a test's
# process exits, after Criterion has counted the test, so the log is scanned
# for sanitizer reports as well.
test: deps
	$(MAKE) all build/tests/unit build/traind-asan
	$(MAKE) test-only
	@$(MAKE) --no-print-directory test-e2e

test-only:
	@mkdir -p build
	set -o pipefail; OMP_WAIT_POLICY=passive ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1 build/tests/unit --jobs 2 $(TEST_ARGS) 2>&1 | tee build/test.log
	@if grep -q 'ERROR: LeakSanitizer\|ERROR: AddressSanitizer\|runtime error:' build/test.log; then \
	    echo "sanitizer reports above: failing the test run" >&2; exit 1; fi

# Whole `traind run` jobs: parity with PyTorch (tests/fixtures/jobs, from
# gen_jobs.py) and bad input under ASan; the HTTP API against the real
# daemon under ASan (test_api.sh). Each script ends "N passed, N failed".
test-e2e: build/traind build/traind-asan
	@ok=0; tests/e2e/test_run_parity.sh build/traind || ok=1; \
	tests/e2e/test_run_errors.sh build/traind-asan || ok=1; \
	tests/e2e/test_api.sh build/traind-asan || ok=1; exit $$ok

# MNIST MLP and CNN, traind and (where torch imports) PyTorch side by side;
# JSON lines on stdout. Needs ../shared/datasets/mnist (skips without it).
bench: build/traind
	@bench/run.sh

# Regenerate the PyTorch fixtures (needs Debian's python3-torch).
fixtures:
	for g in tests/fixtures/gen_*.py; do /usr/bin/python3 $$g || exit 1; done

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
