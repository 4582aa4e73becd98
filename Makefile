# Thin targets over CMake. On a fresh Debian machine each target installs what is
# missing first (apt-get, as root), then configures, builds and runs.

BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
MATRIX_BUILD ?= build-matrix
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
# Seconds per fuzz target: a short run in `make test`, a longer one in `make fuzz`.
FUZZ_SHORT ?= 10
FUZZ_LONG  ?= 600

.PHONY: all deps build demo test test-fast test-asan test-tsan matrix bench fuzz install clean format

all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	@bash scripts/demo.sh $(BUILD)

# The whole suite, then again under AddressSanitizer + UndefinedBehaviorSanitizer,
# the cross-thread tests under ThreadSanitizer, a short fuzz run of each decoder,
# and the build matrix (gcc and clang × Release, RelWithDebInfo, Debug, warnings
# as errors) (scripts/test.sh); the last line sums up every stage.
test: build
	FUZZ_SHORT=$(FUZZ_SHORT) bash scripts/test.sh $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(MATRIX_BUILD)

# Only the build matrix: every compiler and build type a packager or CI uses.
matrix: deps
	bash scripts/build_matrix.sh $(MATRIX_BUILD)

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j 1

bench: build
	@bash bench/run.sh

# libFuzzer targets (clang), one per framing decoder; output under fuzz/out/.
fuzz: deps
	bash fuzz/run.sh $(FUZZ_LONG)

install: build
	cmake --install $(BUILD)

format:
	clang-format -i include/*.h src/*/*.c src/*/*.h tools/tether/*.c tools/tether/*.h examples/*.c tests/*/*.c

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(MATRIX_BUILD)
