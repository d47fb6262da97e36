# coralpi: the two commands a newcomer needs are `make apply` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
INVENTORY ?= inventory/localhost.yml
PYTEST_ARGS ?=
# The suite runs in two pytest-xdist workers, a test module per worker at a time (its
# fixtures, e.g. a module's fleet, stay in one process); TEST_JOBS=0 runs it in one process.
TEST_JOBS ?= 2

.PHONY: install apply verify plan test lint typecheck unit fleet bench demo collection sanity ee clean

install: $(BIN)/coralpi

$(BIN)/coralpi: pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh
	@touch $@

## The main job: provision (then verify) the hosts of INVENTORY (default: this machine).
apply: install
	$(BIN)/coralpi apply -i $(INVENTORY)

verify: install
	$(BIN)/coralpi verify -i $(INVENTORY)

plan: install
	$(BIN)/coralpi plan -i $(INVENTORY)

## Everything CI runs: lint, type check, unit tests, fleet integration tests.
test: install lint typecheck
	$(BIN)/pytest -n $(TEST_JOBS) --dist loadfile $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check provision verify tests bench scripts testfleet playbooks/collection/plugins
	$(BIN)/ruff format --check provision verify tests bench scripts testfleet playbooks/collection/plugins
	$(BIN)/python -m provision.collection specs --check
	$(BIN)/coralpi matrix golden --check
	$(BIN)/yamllint -s playbooks inventory
	$(BIN)/ansible-lint --profile production playbooks

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -m 'not fleet and not arm and not image' $(PYTEST_ARGS)

fleet: install
	$(BIN)/pytest -m fleet $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/verify_overhead.py
	$(BIN)/python bench/fetch_bytes.py
	$(BIN)/python bench/image_prepare.py
	$(BIN)/python bench/image_build.py
	$(BIN)/python bench/converge.py --hosts 1 3 6

## The whole job on a simulated fleet of throwaway Debian hosts (root needed). KEEP=1 keeps it up.
demo: install
	$(BIN)/python scripts/demo.py $(if $(KEEP),--keep,)

## The Ansible collection coralpi.coral (build/coralpi-coral-<version>.tar.gz) from playbooks/.
collection: install
	$(BIN)/python -m provision.collection build --output build

## ansible-test sanity on the built collection (maintainers; about ten minutes, needs PyPI).
sanity: install
	bash scripts/collection_sanity.sh

# The AWX execution environment's build context (execution-environment.yml): the collection
# and the coralpi wheel under build/ee-files/, then `ansible-builder create`.
ee: install
	rm -rf build/ee-files && mkdir -p build/ee-files
	$(BIN)/python -m provision.collection build --output build/ee-files
	mv build/ee-files/coralpi-coral-*.tar.gz build/ee-files/coralpi-coral.tar.gz
	$(BIN)/pip wheel --no-deps --no-build-isolation -q -w build/ee-files .
	$(BIN)/ansible-builder create -f execution-environment.yml -c build/ee-context \
	  --output-filename Containerfile

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
