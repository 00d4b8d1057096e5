# Every target sets up the project-local virtual environment first: a fresh clone needs only `make`.
PY      := .venv/bin/python
STAMP   := .venv/.installed-stamp
# CI and `make test` require every backend, so a broken install fails instead of skipping tests.
export FASTCONV_REQUIRE ?= reference,im2col,numba,winograd

.PHONY: install test bench bench-pytest bench-check bench-budgets lint clean

$(STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[numba,test,cli,plot,examples,dask,dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider --benchmark-disable --doctest-modules fastconv tests bench

# The README's main command: every backend and torch side by side on the default suite.
bench: $(STAMP)
	.venv/bin/fastconv bench

# The same suite through pytest-benchmark; its JSON is kept under bench/results/.
bench-pytest: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider bench --benchmark-sort=name --benchmark-columns=median,min,rounds --benchmark-json=bench/results/$(shell date -u +%Y%m%dT%H%M%S).json

# CI gate: time / torch's time per backend and shape, against the committed bench/budgets.toml.
bench-check: $(STAMP)
	.venv/bin/fastconv gate --budgets bench/budgets.toml

# After a deliberate speed change: re-measure (median of 5 runs, ~3 minutes) and rewrite bench/budgets.toml.
bench-budgets: $(STAMP)
	.venv/bin/fastconv gate --budgets bench/budgets.toml --update --runs 5

lint: $(STAMP)
	.venv/bin/ruff check fastconv tests bench examples conftest.py

clean:
	rm -rf .venv .pytest_cache .benchmarks
