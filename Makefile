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
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wno-unused-parameter
STD     := -std=c11 -D_GNU_SOURCE
INC     := -I. -I/usr/include/x86_64-linux-gnu
DEPFLAGS = -MMD -MP
LIBS    := -lopenblas -ljansson -lz -lm -lpthread
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

CORE_SRC   := $(shell find core -name '*.c' | sort)
SERVER_SRC := $(shell find server -name '*.c' | sort)
TEST_SRC   := $(shell find tests -name '*.c' | sort)

CORE_OBJ   := $(CORE_SRC:%.c=build/obj/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=build/obj/%.o)
ASAN_CORE  := $(CORE_SRC:%.c=build/asan/%.o)
ASAN_TEST  := $(TEST_SRC:%.c=build/asan/%.o)

.PHONY: all run test test-only deps clean fixtures
all: build/traind

build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(STD) $(CFLAGS) $(WARN) $(INC) $(DEPFLAGS) -c $< -o $@

build/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(STD) -O1 -g $(SAN) $(WARN) $(INC) $(DEPFLAGS) -c $< -o $@

build/libtraind.a: $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

build/traind: $(SERVER_OBJ) build/libtraind.a
	$(CC) $(CFLAGS) -o $@ $(SERVER_OBJ) build/libtraind.a $(LIBS)

build/tests/unit: $(ASAN_TEST) $(ASAN_CORE)
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ -lcriterion $(LIBS)

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
	$(MAKE) all build/tests/unit
	$(MAKE) test-only

test-only:
	@mkdir -p build
	set -o pipefail; ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1 build/tests/unit --jobs 2 $(TEST_ARGS) 2>&1 | tee build/test.log
	@if grep -q 'ERROR: LeakSanitizer\|ERROR: AddressSanitizer\|runtime error:' build/test.log; then \
	    echo "sanitizer reports above: failing the test run" >&2; exit 1; fi

# Regenerate the PyTorch fixtures (needs Debian's python3-torch).
fixtures:
	for g in tests/fixtures/gen_*.py; do /usr/bin/python3 $$g || exit 1; done

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
