# The two commands of the README's quick start, on a fresh machine with Python 3.11:
#
#   make book    set up .venv (pinned install) if needed, execute every lab, build the book (_build/html):
#                by default the published book, every lab replaying its committed cpu record (results/cpu/)
#   make test    set up .venv if needed, run the README's test command (unit tests, notebooks, the book)
#
# Both create or reuse the virtual environment VENV (default .venv) and reinstall it only when a
# requirements file or pyproject.toml changed. The offline CIFAR-10 copy next to a checkout
# (../shared/data/cifar10-jpeg) is used when present and LABKIT_DATA is not set; otherwise the labs
# download CIFAR-10 with torchvision. Variables: PYTHON (interpreter for the venv), VENV, PROFILE (the
# book's profile: smoke, cpu or full; default cpu), REPLAY (auto: replay a lab's record when it matches,
# else compute; only: replay or fail; never: compute; default only for cpu, auto otherwise),
# TEST_PROFILE (the tests' notebooks; default $LABKIT_PROFILE, else smoke), JOBS (labs replayed at once, default
# 2), LABKIT_DATA, LABKIT_CACHE.

PYTHON ?= python3
VENV ?= .venv
PROFILE ?= cpu
# Labs executed at once while replaying (REPLAY=only), each kernel on one thread; computing labs go one by one.
JOBS ?= 2
REPLAY ?= $(if $(filter cpu,$(PROFILE)),only,auto)
TEST_PROFILE ?= $(or $(LABKIT_PROFILE),smoke)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.labkit-installed
SHARED_DATA := ../shared/data/cifar10-jpeg

# An absolute path: the kernels run in notebooks/, where a relative one would point elsewhere.
LABKIT_DATA ?= $(if $(wildcard $(SHARED_DATA)/test),$(abspath $(SHARED_DATA)),)
export LABKIT_DATA
# Plain-Python plots (pytest) never open a window; the book build sets the inline backend for kernels.
export MPLBACKEND ?= Agg

.PHONY: book test venv chromium datasets clean-venv

book: $(STAMP) datasets
	LABKIT_REPLAY=$(REPLAY) $(PY) tools/build_book.py --profile $(PROFILE) --jobs $(JOBS)
	@echo "The book: $(abspath _build/html/index.html)"

# The notebooks under test compute (LABKIT_REPLAY=never): a test of the code must run it. The replay is tested
# by tests/test_replay.py, which replays the records of nbval's runs (each lab executes once, conftest.py), and by
# the book test, which builds the published book from results/cpu/. PYTEST_ARGS: more pytest options (.ci/run
# asks for the slowest tests' durations).
PYTEST_ARGS ?=
test: $(STAMP) chromium datasets
	LABKIT_PROFILE=$(TEST_PROFILE) LABKIT_REPLAY=never $(PY) -m pytest $(PYTEST_ARGS)

venv: $(STAMP)

# torchattacks pins an old requests that fights Sphinx 7, so it is installed on its own with --no-deps
# (requirements-nodeps.txt); labkit itself is installed editable.
$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --no-compile -r requirements.txt
	$(PY) -m pip install --no-compile --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --no-compile --no-deps -e .
	touch $(STAMP)

# Labs 10-11 measure Fashion-MNIST (it stands in for MNIST digits) from Debian's package, installed like Chromium
# below when missing (as root on Debian); elsewhere torchvision downloads it (LABKIT_FASHION_MNIST names a copy).
datasets:
	@if [ -n "$$LABKIT_FASHION_MNIST" ] || [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dataset-fashion-mnist; \
	else echo "Fashion-MNIST not found: Labs 10-11 will download it with torchvision"; fi

# The book test opens the built pages in headless Chromium. As root on Debian it is installed when
# missing; elsewhere the test says how, and skips outside CI.
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	else echo "chromium not found: the book test will skip (install Debian's chromium to run it)"; fi

clean-venv:
	rm -rf $(VENV)
