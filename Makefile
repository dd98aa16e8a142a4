# TNA: build, test, demo.  `make demo` and `make test` work on a fresh Debian bookworm machine:
# both run the bootstrap first (apt + pip, idempotent), then build the BPF objects.
PYTHON ?= python3
CLANG ?= clang
MULTIARCH := $(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
BPF_CFLAGS := -O2 -g -target bpf -Wall -Werror -Ibpf/include -Ibpf -I/usr/include/$(MULTIARCH)
OBJDIR := src/tna/bpf
BPF_SRCS := $(wildcard bpf/*.bpf.c)
BPF_OBJS := $(patsubst bpf/%.bpf.c,$(OBJDIR)/%.bpf.o,$(BPF_SRCS))
BPF_DEPS := $(wildcard bpf/include/*.h bpf/lib/*.h)
# tna bench's own programs (traffic sources, sink, references): package data under bench/
BENCH_SRCS := $(wildcard bpf/bench/*.bpf.c)
BENCH_OBJS := $(patsubst bpf/bench/%.bpf.c,$(OBJDIR)/bench/%.bpf.o,$(BENCH_SRCS))

.PHONY: all bootstrap build demo test test-unit lint bench bench-smoke bench-reconfig bench-monitor bench-scaling clean

all: build

bootstrap:
	./scripts/bootstrap

# Test-only builds of the router with one safety check taken out (bpf/tests/, which wraps the
# production pipeline): the equivalence suite must catch each of them (tests/equivalence).
# Never loaded by tna itself.
BROKEN_VARIANTS := skip_ttl_check skip_csum_check
BROKEN_OBJS := $(patsubst %,$(OBJDIR)/testing/tna_xdp_broken_%.bpf.o,$(BROKEN_VARIANTS))

build: $(BPF_OBJS) $(OBJDIR)/tna_abi.h $(BROKEN_OBJS) $(BENCH_OBJS)

$(OBJDIR)/testing/tna_xdp_broken_%.bpf.o: bpf/tests/tna_xdp_broken.bpf.c bpf/tna_xdp.bpf.c $(BPF_DEPS)
	@mkdir -p $(OBJDIR)/testing
	$(CLANG) $(BPF_CFLAGS) -DTNA_BROKEN_$(shell echo $* | tr a-z A-Z) -c $< -o $@.tmp
	llvm-strip -g $@.tmp
	mv $@.tmp $@

$(OBJDIR)/%.bpf.o: bpf/%.bpf.c $(BPF_DEPS)
	@mkdir -p $(OBJDIR)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@.tmp
	llvm-strip -g $@.tmp  # keep BTF, drop DWARF
	mv $@.tmp $@

$(OBJDIR)/bench/%.bpf.o: bpf/bench/%.bpf.c bpf/bench/bench_gen.h $(BPF_DEPS)
	@mkdir -p $(OBJDIR)/bench
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@.tmp
	llvm-strip -g $@.tmp
	mv $@.tmp $@

$(OBJDIR)/tna_abi.h: bpf/include/tna_abi.h
	@mkdir -p $(OBJDIR)
	cp $< $@

demo: bootstrap
	tna demo

test: bootstrap
	$(PYTHON) -m pytest -q -p no:cacheprovider tests

test-unit:
	$(PYTHON) -m pytest -q tests/unit

lint:
	ruff check src tests testing
	mypy

bench: bootstrap
	tna bench

bench-smoke: bootstrap
	tna bench --smoke

bench-reconfig: bootstrap
	$(PYTHON) -m tna.bench.reconfig

# What tna monitor's switch costs the program (off, expired, on), against the object built
# before the monitor existed when BASELINE=path/to/tna_xdp.bpf.o is given
bench-monitor: bootstrap
	$(PYTHON) -m tna.bench.monitor_cost $(if $(BASELINE),--baseline $(BASELINE))

# Cost as the work grows (routes, destinations, rules, FDB, conntrack): Linux vs TNA, charts
# need matplotlib (the plot extra, installed here if missing). SWEEPS=routes4,fdb MAX=10000
bench-scaling: bootstrap
	$(PYTHON) -c 'import matplotlib' 2>/dev/null || $(PYTHON) -m pip install -q -e '.[plot]' \
		|| echo "bench-scaling: matplotlib unavailable, charts will be skipped"
	$(PYTHON) -m tna.bench.scaling $(if $(SWEEPS),--sweeps $(SWEEPS)) $(if $(MAX),--max $(MAX)) \
		--quiet-load 1.5

clean:
	rm -rf build $(OBJDIR)/*.bpf.o $(OBJDIR)/tna_abi.h $(OBJDIR)/testing $(OBJDIR)/bench

# Profiling builds of the fast path with steps of the stateful path taken out
# (bpf/lib/profile.h): measured beside the production object with
# `tna bench --variant NAME=build/profile/tna_xdp_NAME.bpf.o`. Never loaded by tna itself.
PROFILE_VARIANTS := no_csum:1 no_refresh:2 no_window:4 no_classify:8 no_lookup:16 no_nat:32 \
	no_ct:31 no_ct_nat:63 no_last:128 before:64 before_no_refresh:66 before_no_classify:72
PROFILE_OBJS := $(foreach v,$(PROFILE_VARIANTS),build/profile/tna_xdp_$(word 1,$(subst :, ,$(v))).bpf.o)

.PHONY: profile-variants
profile-variants: $(PROFILE_OBJS)

build/profile/tna_xdp_%.bpf.o: bpf/tna_xdp.bpf.c $(BPF_DEPS)
	@mkdir -p build/profile
	$(CLANG) $(BPF_CFLAGS) -DTNA_PROFILE_OFF=$(word 2,$(subst :, ,$(filter $*:%,$(PROFILE_VARIANTS)))) -c $< -o $@.tmp
	llvm-strip -g $@.tmp
	mv $@.tmp $@
