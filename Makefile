# Thin wrapper around CMake: `make run` probes this host, `make test` runs the whole suite.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=
ifneq ($(HOSTFIT_WERROR),)
CMAKE_FLAGS += -DHOSTFIT_WERROR=$(HOSTFIT_WERROR)
endif
ifneq ($(shell command -v ccache),)
CMAKE_FLAGS += -DCMAKE_CXX_COMPILER_LAUNCHER=ccache
endif

.PHONY: all deps configure build run test sanitize bench fuzz format clean

all: build

deps:
	@scripts/install-deps

configure: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j$(JOBS)

# Builds only the binary: the test suite and benchmarks are not needed to probe this host.
run: configure
	@cmake --build $(BUILD) -j$(JOBS) --target hostfit
	$(BUILD)/src/cli/hostfit probe

# The vm label boots qemu guests (tests/vm); each prints one line: shape, kernel, tests run.
test: build
	@rm -rf $(BUILD)/vm/summary
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS); status=$$?; \
	  cat vm/summary/* 2>/dev/null; exit $$status

# The suite under AddressSanitizer and UndefinedBehaviorSanitizer, in build-asan.
sanitize: deps
	scripts/sanitize

bench: build
	bench/update-benchmarks

# Each libFuzzer harness of tests/fuzz for FUZZ_SECONDS (600 by default), clang-19, ASan + UBSan.
FUZZ_SECONDS ?= 600
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) JOBS=$(JOBS) tests/fuzz/run-fuzz

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
