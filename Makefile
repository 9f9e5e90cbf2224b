# Two commands on a fresh machine:  `make attack` (the main job) and `make test`.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python

.PHONY: attack test clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

attack: $(VENV)/.installed
	$(VENV)/bin/knockoff attack --env Knockoff-Digits-v0 --agent adaptive --seed 0 --eval-every 100 --retrain-epochs 30 --logdir runs/digits-adaptive

test: $(VENV)/.installed
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
