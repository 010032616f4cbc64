# bert-in-a-flask. `make help` lists the targets. Knobs are CLI flags with their defaults in
# src/*.py; the variables here only pass them on when set (e.g. make train args="--num-train-epochs 2").

PYTHON ?= python3.7
# A working interpreter for $(PYTHON): on PATH, else the newest matching pyenv version.
PY_BIN := $(shell if $(PYTHON) -c 'import sys' >/dev/null 2>&1; then command -v $(PYTHON); \
	else v=$$(pyenv versions --bare 2>/dev/null | grep -E '^$(patsubst python%,%,$(notdir $(PYTHON)))(\.[0-9]+)*$$' | tail -n 1); \
	[ -n "$$v" ] && echo "$$(pyenv prefix $$v)/bin/python"; fi)
VENV ?= .venv-$(notdir $(PYTHON))
VPY := $(VENV)/bin/python
REQUIREMENTS ?= requirements_dev.txt

args ?=
api_port ?= 5000
model_dir ?=
gpu ?=
tensorboard_port ?= 6006
LOG_DIR ?= models/logs

.PHONY: help venv test train tensorboard start_api stop_api clean_venv

help:
	@echo "make test [PYTHON=python3.11]   venv for PYTHON (default python3.7 = TF 1.15) + pytest"
	@echo "make train [args='--flag v']    fine-tune (python src/train.py --help lists every flag)"
	@echo "make start_api [api_port=5000]  gunicorn + Flask /predict on the newest export; make stop_api"

$(VENV)/.installed-$(notdir $(REQUIREMENTS)): $(REQUIREMENTS)
	@if [ -z "$(PY_BIN)" ]; then echo "error: no working $(PYTHON) on PATH or under pyenv;" \
		"pick another with PYTHON=python3.11 (TF 2.15) or install Python 3.7 (pyenv install 3.7.16)" >&2; exit 2; fi
	@echo "== virtualenv $(VENV) from $(PY_BIN) ($(REQUIREMENTS))"
	$(PY_BIN) -m venv $(VENV)
	$(VPY) -m pip install --quiet -r $(REQUIREMENTS)
	$(VPY) -m pip check
	touch $@

venv: $(VENV)/.installed-$(notdir $(REQUIREMENTS))

test: venv
	$(VPY) -m pytest tests -q -p no:cacheprovider $(pytest_args)

train: venv
	$(VPY) src/train.py $(args)

tensorboard: venv
	$(VENV)/bin/tensorboard --logdir models/checkpoints --host 0.0.0.0 --port $(tensorboard_port)

start_api: venv
	@mkdir -p $(LOG_DIR)
	@PORT=$(api_port) $(if $(model_dir),MODEL_DIR=$(model_dir)) $(VENV)/bin/gunicorn -c gunicorn.conf.py \
		--daemon --pid $(LOG_DIR)/gunicorn-$(api_port).pid --error-logfile $(LOG_DIR)/gunicorn-$(api_port).log \
		--chdir src "app:create_app()"
	@$(VPY) src/wait_ready.py http://127.0.0.1:$(api_port) $(LOG_DIR)/gunicorn-$(api_port).log
	@echo "API listening on http://localhost:$(api_port)/predict (log: $(LOG_DIR)/gunicorn-$(api_port).log; stop: make stop_api api_port=$(api_port))"

stop_api:
	@if [ -f $(LOG_DIR)/gunicorn-$(api_port).pid ]; then kill $$(cat $(LOG_DIR)/gunicorn-$(api_port).pid) && \
		echo "stopped the API on port $(api_port)"; else echo "no API running on port $(api_port)"; fi

clean_venv:
	rm -rf .venv-*
