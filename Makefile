# Two commands on a fresh machine:  `make attack` (the main job) and `make test`.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python

.PHONY: attack test docs clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

attack: $(VENV)/.installed
	$(VENV)/bin/knockoff attack --env Knockoff-Digits-v0 --agent adaptive --seed 0 --eval-every 100

test: $(VENV)/.installed   # two test processes, each test file in one of them (pytest-xdist)
	$(PY) -m pytest -q -n 2 --dist loadfile

docs: $(VENV)/.installed   # the documentation site, into site/ (`.venv/bin/mkdocs serve` to read it live)
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) runs site .pytest_cache
