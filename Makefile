# The two commands of the README. Both install what is missing first (scripts/install-deps.sh).
BUILD ?= build
ASAN_BUILD ?= build-asan
WEB_BUILD ?= build-web
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?= -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
FUZZ_BUILD ?= build-fuzz
FUZZ_CXX ?= clang++-14
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 30

.PHONY: all deps build run web test test-asan test-fuzz fuzz fuzz-build test-long format clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja:
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null

build: deps $(BUILD)/build.ninja
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/wgllm run -n 256

# The browser build (docs/web.md): build-web/pkg (wgllm.wasm, wgllm.js, the JS API), build-web/chat.
web: deps
	@NODE_PATH=/usr/share/nodejs emcmake cmake -S . -B $(WEB_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
	@NODE_PATH=/usr/share/nodejs cmake --build $(WEB_BUILD) -j $(JOBS) --target wgllm_web wgllm_web_files

test: build web test-asan test-fuzz
	cd $(BUILD) && ctest --output-on-failure --no-tests=error -j $(JOBS) --timeout 900

# The unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer + LeakSanitizer: every test
# binary of a CPU-side layer (CPU_ONLY in tests/CMakeLists.txt) and the fuzz-input replays.
test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) $(CMAKE_FLAGS) -DCMAKE_BUILD_TYPE=Debug -DWGLLM_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS) --target cpu_asan_tests
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure --no-tests=error -j $(JOBS) --timeout 900 -L cpu_asan

# libFuzzer targets (tests/fuzz/, docs/reliability.md): a clang build of the CPU layers with coverage,
# ASan and UBSan, independent of the main build.
fuzz-build: deps
	@cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=$(FUZZ_CXX) \
	  -DWGLLM_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_targets

# Every fuzz target for FUZZ_SECONDS (long runs, by hand), then a short one of each in `make test`.
fuzz: fuzz-build
	tests/fuzz/run_fuzzers.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(JOBS)

test-fuzz: fuzz-build
	tests/fuzz/run_fuzzers.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS) $(JOBS)

# Long runs by hand, recorded in docs/: the server's load test at 64 connections for 60 s
# (docs/reliability.md; the figures also go to $(BUILD)/load-test.json), and a GGUF file larger than 4 GiB
# loaded in headless Chromium (docs/web.md; written to a temporary folder, deleted after, skipped without
# the disk or memory; figures in $(BUILD)/web-large-file.json).
test-long: build web
	WGLLM_BINARY=$(BUILD)/wgllm node tests/node/load_test.mjs --connections 64 --seconds 60 --json $(BUILD)/load-test.json
	node tests/web/large_file.mjs --web $(WEB_BUILD) --wgllm $(BUILD)/wgllm --json $(BUILD)/web-large-file.json

format:
	clang-format -i $$(git ls-files 'src/*.cpp' 'src/*.hpp' 'tests/*.cpp' 'tests/*.hpp')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(WEB_BUILD) $(FUZZ_BUILD)
