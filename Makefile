# Thin wrapper around CMake: `make run` probes this host, `make test` runs the whole suite.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=
ifneq ($(HOSTFIT_WERROR),)
CMAKE_FLAGS += -DHOSTFIT_WERROR=$(HOSTFIT_WERROR)
endif

.PHONY: all deps configure build run test bench format clean

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

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

bench: build
	bench/update-benchmarks

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
