# Two commands (see README): `make run` and `make test`. Both set everything up first.
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTHON ?= python3
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

export DVC_NO_ANALYTICS=1
export RAY_USAGE_STATS_ENABLED=0
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup data run test browser lint app clean-runs

setup: $(VENV)/.installed data

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

data:
	@if [ -f $(FMNIST) ]; then echo "Fashion-MNIST: found in /usr/share/datasets/fashion-mnist"; \
	elif command -v apt-get >/dev/null; then $(SUDO) apt-get install -y -q dataset-fashion-mnist \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist); \
	else echo "Fashion-MNIST is missing and apt-get is unavailable: set dataset.download: true in the suite (needs network) or dataset.root"; fi

run: setup
	dvc repro
	sslbench show

browser:
	@command -v chromium >/dev/null || (command -v apt-get >/dev/null && ($(SUDO) apt-get install -y -q chromium \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium))) \
	  || echo "chromium not installed: the browser test will be skipped"

test: setup browser
	$(BIN)/python -m pytest

app: setup
	streamlit run app/Leaderboard.py

lint: setup
	$(BIN)/ruff check bench methods evaluations pipeline tests app

clean-runs:
	rm -rf runs data
