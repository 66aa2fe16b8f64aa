# Two commands for a newcomer: `make demo` (main job on the embedded default) and `make test`.
# Both create .venv at the repository root and install the pinned stack (requirements/lock.txt).
# requirements/lock.txt is resolved for CPython 3.11
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# A fresh .venv measures 6.9 GiB (torch's CUDA build and NVIDIA libraries: 5.3); pip needs room to unpack.
INSTALL_GIB := 8
# `xtuner <cmd>` starts its tools with the first `python` on PATH: make it the venv's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# DeepSpeed is an sdist: build it pure-Python (no CUDA needed here); its ops compile on first use on a GPU.
export DS_BUILD_OPS := 0

.PHONY: install demo test test-fast lock clean browser

install: $(STAMP)

$(STAMP): requirements/lock.txt pyproject.toml
	@test -d $(VENV) || $(PYTHON) tools/check_free_space.py --need-gib $(INSTALL_GIB) $(CURDIR)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q --no-deps -r requirements/lock.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -c "import xtuner_ext, bitsandbytes, xtuner.dataset, deepspeed"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py

test: $(STAMP) browser
	$(PY) -m pytest -q -ra

# The web demo's test drives Debian's headless chromium through playwright (never `playwright install`).
browser:
	@test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium chromium-driver)

test-fast: $(STAMP)
	$(PY) -m pytest -q -ra -m "not slow"

lock: $(STAMP)
	@echo "Record the working environment into requirements/lock.txt by hand-merging:" && \
	$(PY) -m pip freeze --exclude-editable | grep -v '^xtuner @'

clean:
	rm -rf $(VENV) work_dirs embedded .pytest_cache
