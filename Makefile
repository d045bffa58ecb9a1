# vigil: `make run` to try it, `make test` to test it (installs the test peers itself).
# .venv is the developers' editable install (make run, make docs, one test file with .venv/bin/pytest);
# `make test` tests the wheel instead, installed in a clean .suite/venv (tests/wheel_suite.sh).
VENV ?= .venv
PYTHON ?= python3
VIGIL := $(VENV)/bin/vigil
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lab bench soak docs clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -c constraints.txt --editable '.[test]'
	touch $@

# CONFIG=FILE runs another config; the state goes to .state/ here, never to the service's
# /var/lib/vigil, unless the config sets state_dir
run: export STATE_DIRECTORY := $(CURDIR)/.state
run: $(VENV)/.installed
	@echo "Starting vigil with $(or $(CONFIG),$$( [ -e /etc/vigil/vigil.yaml ] && echo /etc/vigil/vigil.yaml || echo 'its embedded default config')) (Ctrl-C stops it)"
	$(VIGIL) run $(if $(CONFIG),-c $(CONFIG))

lab:
	tests/lab/setup.sh

test: lab  # TESTS="tests/test_x.py ..." (any pytest arguments) runs only those
	tests/wheel_suite.sh $(TESTS)

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/footprint.py
	$(VENV)/bin/python bench/scrape.py

soak: lab $(VENV)/.installed  # 500 mixed targets for 10 minutes (MINUTES=): first cycle, RSS start/end and slope
	$(VENV)/bin/python bench/soak.py --minutes $(or $(MINUTES),10)

docs: $(VENV)/.installed  # and the generated blocks of each kind's page, collectors/<family>/README.md
	$(VIGIL) docs metrics --output docs/metrics.md
	$(VIGIL) docs config --output docs/config.md
	$(VENV)/bin/python -m agent.kindpage tests.skeleton.collector:Counting

clean:
	rm -rf $(VENV) .suite .lab .pytest_cache
