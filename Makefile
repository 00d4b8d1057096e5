# Every target sets up the project-local virtual environment first: a fresh clone needs only `make`.
PY      := .venv/bin/python
STAMP   := .venv/.installed-stamp
# CI and `make test` require every backend, so a broken install fails instead of skipping tests.
export FASTCONV_REQUIRE ?= reference,im2col,numba

.PHONY: install test bench bench-check lint clean

$(STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,cli,plot,examples,dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider --benchmark-disable --doctest-modules fastconv tests bench

bench: $(STAMP)
	.venv/bin/fastconv check

lint: $(STAMP)
	.venv/bin/ruff check fastconv tests bench

clean:
	rm -rf .venv .pytest_cache .benchmarks
