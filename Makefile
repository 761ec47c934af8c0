# vae-edge: train -> export -> runtime / firmware_sim. Each stage reads files and writes files.
#   make setup train export     # first run on a fresh machine (CPU: about an hour for all four models)
#   make setup test             # what CI runs
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARTIFACTS ?= artifacts
REPORTS ?= reports
# The real MNIST: an explicit path wins; else ../shared/data/mnist.npz where it exists; else keras downloads it.
VAE_EDGE_MNIST ?= $(wildcard $(abspath ../shared/data/mnist.npz))
export VAE_EDGE_MNIST
export TF_CPP_MIN_LOG_LEVEL ?= 2
EPOCHS ?=
TRAIN_FLAGS ?= $(if $(EPOCHS),--epochs $(EPOCHS),)
# e.g. BENCH_TRAIN_FLAGS='--epochs 30 --precisions float32' for the quality comparison README cites
BENCH_TRAIN_FLAGS ?=
# e.g. WEB_BENCH_FLAGS='--runtimes vae-edge-wasm,onnxruntime-web' (README's table), or '--invokes 10 --rounds 1
# --loads 1' for a quick run
WEB_BENCH_FLAGS ?=

.PHONY: help setup train export simulate firmware exactness test lint format bench-train results levers bench check pi-bundle pi-check clean fuzz bench-decode web web-deps web-serve web-bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed  ## create .venv with the pinned dependencies

train: setup  ## train vae2d, vae3d, vae2d_corr and the classifier into artifacts/ (resumes if interrupted)
	$(PY) -m train --model all --out $(ARTIFACTS) --resume $(TRAIN_FLAGS)

export: setup  ## convert every trained model to TFLite/ONNX (+ C array), validated -> artifacts/<model>/export/
	$(PY) -m export --model all --artifacts $(ARTIFACTS) --reports $(REPORTS)

simulate: setup  ## int8 decoders on simulated MCUs (TFLite Micro reference) -> reports/firmware.{json,md}
	$(PY) -m firmware_sim --model all --target all --artifacts $(ARTIFACTS) --reports $(REPORTS)

firmware: setup  ## int8 decoders as generated C: host + emulated Cortex-M4/M7/M33/M55 and RV32IMAC (QEMU), vs TFLM -> reports/firmware_c.{json,md}
	$(PY) -m firmware_sim.measure --model all --artifacts $(ARTIFACTS) --reports $(REPORTS)

exactness: setup  ## TFLM vs numpy reference vs generated C on drawn one-op models and redrawn decoders -> reports/exactness.{json,md}
	$(PY) -m tools.exactness --reports $(REPORTS)

test: setup web-deps  ## lint + the whole test suite (what CI runs)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q

lint: setup  ## ruff check
	$(PY) -m ruff check .

format: setup  ## ruff format + autofix
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench-train: setup  ## vae-edge's loop vs the keras-io reference loop, 2-D and 3-D, same data -> reports/bench_train.{json,md}
	$(PY) -m train.bench --out $(REPORTS) $(BENCH_TRAIN_FLAGS)

results: setup  ## re-run README's training table: seeds 0,1,2 x all four models (hours) -> reports/results.{json,md}
	$(PY) -m train.results --seeds 0,1,2 --out $(ARTIFACTS)/results --reports $(REPORTS)

levers: setup  ## training levers one at a time, 3 seeds, on a GPU (JAX backend: pip install jax first) -> reports/lever_sweep.*
	KERAS_BACKEND=jax $(PY) -m tools.lever_sweep --out $(REPORTS) --workers 12

check: setup  ## quality of every quantized decoder vs float32 -> reports/check.{json,md,png}
	$(PY) -m runtime check --artifacts $(ARTIFACTS) --reports $(REPORTS)

bench: setup  ## check + latency bench of every decoder, judged against the x86 goals -> reports/{check,bench,bench_goals}.*
	$(PY) -m runtime check --artifacts $(ARTIFACTS) --reports $(REPORTS)
	$(PY) -m runtime bench --artifacts $(ARTIFACTS) --reports $(REPORTS)
	$(PY) -m tools.bench_goals --reports $(REPORTS)

pi-bundle: setup  ## runtime + exported artifacts + MNIST test split -> dist/vae-edge-pi.tar.gz
	$(PY) -m tools.pi.bundle --artifacts $(ARTIFACTS) --out dist/vae-edge-pi.tar.gz

pi-check: setup  ## (root) runtime alone on emulated Pi 4/5 (qemu-user, Debian 12 arm64) vs the host -> reports/pi_check.*
	$(PY) -m tools.pi.check --artifacts $(ARTIFACTS) --reports $(REPORTS) --boards pi4,pi5

fuzz: setup  ## mutated models, manifests, inputs, .npz, firmware graphs, C-generator graphs, run sets for export, CLI output paths -> reports/fuzz.{json,md}
	$(PY) -m tools.fuzz --artifacts $(ARTIFACTS) --reports $(REPORTS) $(if $(VAE_EDGE_MNIST),--data $(VAE_EDGE_MNIST),)

bench-decode: setup  ## peak RSS of decoding 1e4/1e5/1e6 latents, streamed vs one call -> reports/decode_rss.{json,md}
	$(PY) -m tools.decode_rss --artifacts $(ARTIFACTS) --reports $(REPORTS)

WEB_NODE_MODULES := tools/web/node_modules/.package-lock.json
$(WEB_NODE_MODULES): tools/web/package.json tools/web/package-lock.json
	cd tools/web && npm ci --no-audit --no-fund --loglevel=error

web-deps: $(WEB_NODE_MODULES)  ## install the pinned browser runtimes (npm ci in tools/web)

web: setup web-deps  ## the latent explorer: a static offline site from artifacts/*/export/ -> dist/web
	$(PY) -m tools.web build --artifacts $(ARTIFACTS) --out dist/web

web-serve: setup  ## serve dist/web on http://127.0.0.1:8000/ (make web first)
	$(PY) -m tools.web serve --site dist/web --port 8000

web-bench: setup web-deps  ## decode latency in headless Chromium vs the Python runtime -> reports/web_bench.*, screenshots
	$(PY) -m tools.web bench --artifacts $(ARTIFACTS) --reports $(REPORTS) $(WEB_BENCH_FLAGS)

clean:  ## remove reports and caches (artifacts/ is kept: it holds trained models)
	rm -rf $(REPORTS) dist .pytest_cache .ruff_cache runtime/build runtime/*.egg-info
