# tests/fuzz/fuzz.mk - libFuzzer targets for the parsers of untrusted input
# (included from the Makefile).
#
#   make fuzz-smoke   each target for FUZZ_SMOKE_SECONDS (4) on its committed
#                     corpus, two at a time, then every committed regression
#                     input replayed;
#                     fails on any crash, leak, hang or sanitizer report
#                     (part of `make test`)
#   make fuzz         each target for FUZZ_SECONDS (300), one after another;
#                     what it finds new is kept in build/fuzz/corpus/<target>
#                     (commit the interesting ones by hand)
#   make fuzz FUZZ_TARGETS=csv FUZZ_SECONDS=60   one target
#
# Targets are built with Debian's clang (libFuzzer comes with its
# libclang-rt-*-dev) against core/ and the server/ files they feed compiled a third
# time, by clang with the fuzzer's coverage, ASan and UBSan, in build/fuzz/obj.
# tests/fuzz/README.md says what each target feeds and checks.

FUZZ_CC      ?= clang
FUZZ_TARGETS ?= spec lr_expr csv idx npy safetensors multipart http_parse http_conn image \
                tokens cifar10 archive json_limits slurm url
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 4
# clang's OpenMP (libomp) for core's pragmas; no CUDA: the parsers are host code.
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# -Wno-pass-failed: the sanitizers' instrumentation keeps clang from
# vectorizing an `omp simd` loop (core/cpu/layer_norm.c), which it reports as
# a warning; a slower fuzz build is no defect (the release build vectorizes).
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -O1 -g -fopenmp $(FUZZ_SAN) $(WARN) -Wno-pass-failed $(INC)

FUZZ_CORE    := $(CORE_SRC:%.c=build/fuzz/obj/%.o)
FUZZ_SUPPORT := build/fuzz/obj/tests/fuzz/fuzz_support.o
FUZZ_BINS    := $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(DEPFLAGS) -c $< -o $@

build/fuzz/libcore.a: $(FUZZ_CORE)
	rm -f $@ && ar rcs $@ $^

# server/multipart.c stands alone (no server/http.c): fed directly.
build/fuzz/fuzz_multipart: build/fuzz/obj/server/multipart.o
build/fuzz/fuzz_http_parse: build/fuzz/obj/server/http_parse.o build/fuzz/obj/server/http_chunked.o
# one connection's state machine, its events stubbed (no server/http.c)
build/fuzz/fuzz_http_conn: build/fuzz/obj/server/http_conn.o build/fuzz/obj/server/http_parse.o \
    build/fuzz/obj/server/http_chunked.o build/fuzz/obj/server/http_response.o \
    build/fuzz/obj/server/http_tls.o
# the archive extraction stands alone too (libarchive is in LIBS)
build/fuzz/fuzz_archive: build/fuzz/obj/server/dataset_archive.o
# the JSON bodies' scan, against jansson
build/fuzz/fuzz_json_limits: build/fuzz/obj/server/json_limits.o
# what traind reads of Slurm (slurm.c runs its commands through command.c)
build/fuzz/fuzz_slurm: build/fuzz/obj/server/slurm.o build/fuzz/obj/server/command.o
# a URL import's checks before any fetch, and the address policy
build/fuzz/fuzz_url: build/fuzz/obj/server/url_fetch.o build/fuzz/obj/server/addr_policy.o \
    build/fuzz/obj/server/log.o build/fuzz/obj/server/text.o build/fuzz/obj/server/text_json.o \
    build/fuzz/obj/storage/sha256.o

build/fuzz/fuzz_%: build/fuzz/obj/tests/fuzz/fuzz_%.o $(FUZZ_SUPPORT) build/fuzz/libcore.a
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -fopenmp -o $@ $(filter %.o,$^) build/fuzz/libcore.a \
	    $(LIBS)

# the targets' own objects are not intermediates to delete after linking
.SECONDARY: $(FUZZ_TARGETS:%=build/fuzz/obj/tests/fuzz/fuzz_%.o) $(FUZZ_SUPPORT)

fuzz-smoke: $(FUZZ_BINS)
	@FUZZ_JOBS=2 tests/fuzz/run.sh smoke $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

fuzz: $(FUZZ_BINS)
	@tests/fuzz/run.sh long $(FUZZ_SECONDS) $(FUZZ_TARGETS)

