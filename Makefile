# ecgi: the two commands a user needs are `make demo` and `make test`.
# Both run `make install` first, which is idempotent: it installs the Debian
# packages (as root), creates .venv on top of the system's petsc4py/mpi4py
# and installs ecgi into it, once; later calls only check a stamp file.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ecgi-installed
PETSC_PYTHON := /usr/lib/petscdir/petsc3.18/x86_64-linux-gnu-real/lib/python3/dist-packages
# The solver (PETSc, MPI, HDF5) and the local SLURM the tests start.
DEBIAN_PACKAGES := python3-petsc4py python3-mpi4py openmpi-bin python3-venv python3-h5py \
	python3-yaml python3-scipy slurmctld slurmd slurm-client munge
# Open MPI refuses to run as root unless told it may (CI and containers run as root).
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1

.PHONY: install system-packages test demo verify bench clean

install: $(STAMP)

$(STAMP): setup.cfg setup.py Makefile
	@$(MAKE) --no-print-directory system-packages
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	@# Debian's petsc4py lives outside sys.path unless PETSC_DIR is set: add it.
	@site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	  test -d $(PETSC_PYTHON) && echo $(PETSC_PYTHON) > $$site/petsc-debian.pth || true
	$(PY) -m pip install --quiet --upgrade pip
	@# numpy<2: Debian's petsc4py and h5py are built against numpy 1.x.
	$(PY) -m pip install --quiet "numpy<2" "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[workflow,model,anatomy,test]"
	$(PY) -c "from petsc4py import PETSc; from mpi4py import MPI; import h5py, numba, parsl, torch"
	@touch $(STAMP)
	@echo "ecgi installed in $(VENV) (activate with: source $(VENV)/bin/activate)"

system-packages:
	@if ! command -v dpkg >/dev/null; then \
	  echo "not a Debian system: create the conda environment from environment.yml instead"; exit 1; fi; \
	missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "make install: as root, run: apt-get install" $$missing; exit 1; fi; \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# ruff: pyflakes, pycodestyle's errors and bugbear; mypy: setup.cfg's [mypy].
RUFF_RULES := --select E4,E7,E9,F,B --ignore B905 --target-version py310 --line-length 120

lint: install
	$(VENV)/bin/ruff check --isolated $(RUFF_RULES) solver workflow model tests bench
	$(VENV)/bin/mypy solver workflow model

test: install lint
	$(PY) -m pytest -q tests

demo: install
	$(VENV)/bin/ecgi demo --output demo

# The solver against the Niederer benchmark (docs/verification.md).
verify: install
	$(VENV)/bin/ecgi verify niederer --dx 0.5 --dt 0.05
	$(VENV)/bin/ecgi verify niederer --dx 0.5 --dt 0.05 --calibrated

# Timing benchmarks: each writes bench/results/NAME.json; then docs/performance.md from them.
bench: install
	$(PY) -m bench.solver_throughput
	$(PY) -m bench.patient_sample
	$(PY) -m bench.campaign_throughput --slurm
	$(PY) -m bench.aggregation_throughput
	$(PY) -m bench.train_throughput
	$(PY) -m bench.clinical_throughput
	$(PY) -m bench.report

clean:
	rm -rf $(VENV) demo .pytest_cache
