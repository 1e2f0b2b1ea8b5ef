# tracefleet.ftrace — developer entry points.
#
#   make demo          boot two lab VMs and run the demo playbook against them
#   make test          lint + sanity + unit + integration (molecule on lab VMs)
#   make format        ruff: fix what it can, format the tree
#
# Both install what they need first: Debian packages (as root; otherwise they
# say what is missing), a .venv with the pinned tools, the lab kernel and images.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
PYTHON ?= python3
TRACELAB := $(ROOT)/lab/tracelab
COLLECTIONS := $(ROOT)/build/collections
LINK := $(COLLECTIONS)/ansible_collections/tracefleet/ftrace
SCENARIOS := $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard extensions/molecule/*/molecule.yml))))
# ansible-core minors that meta/runtime.yml claims (requires_ansible >=2.17.0). Each
# has its venv for sanity and unit tests: the newest is .venv (with every tool, from
# requirements-dev.txt), the others .venv-2.X with ansible-core and pytest only (from
# requirements/ansible-core-2.X.txt). `make test` runs the oldest and the newest.
CORE_VERSIONS := 2.17 2.18 2.19
CORE_NEWEST := $(lastword $(CORE_VERSIONS))
CORE_OLDER := $(filter-out $(CORE_NEWEST),$(CORE_VERSIONS))
CORE_TESTED := $(firstword $(CORE_VERSIONS)) $(CORE_NEWEST)
core_venv = $(if $(filter $(CORE_NEWEST),$(1)),$(VENV),$(ROOT)/.venv-$(1))
# Target-side code: runs on the managed hosts, whose Python may be as old as 3.8.
TARGET_CODE := plugins/modules plugins/module_utils
# The lab's kernel series (lab/tracelab up --kernel; the first is the default). The
# scenarios whose subject is kernel behaviour run on each of them (molecule-NAME@SERIES,
# TRACELAB_KERNEL tells the scenario's create step); the others on the default.
KERNELS := 6.1 6.12
KERNEL_SCENARIOS := capture debugfs default probes state
matrix = $(foreach k,$(wordlist 2,$(words $(KERNELS)),$(KERNELS)),$(addsuffix @$(k),$(addprefix molecule-,$(1))))
KERNEL_MATRIX := $(call matrix,$(KERNEL_SCENARIOS))
# `make integration` runs every scenario, and the kernel scenarios on every series,
# with tools/run-scenarios: INTEGRATION_JOBS at once (default: one per core; a TCG
# guest keeps one core busy), started longest first (measured), a scenario never
# twice at once. A scenario missing from SCENARIO_ORDER runs last.
SCENARIO_ORDER := state fleet session reboot capture bad-input playbooks debugfs probes compliance default role-tracefs lockdown
INTEGRATION_RUNS := $(foreach s,$(SCENARIO_ORDER) $(filter-out $(SCENARIO_ORDER),$(SCENARIOS)),$(s) \
	$(if $(filter $(s),$(KERNEL_SCENARIOS)),$(addprefix $(s)@,$(wordlist 2,$(words $(KERNELS)),$(KERNELS)))))
INTEGRATION_JOBS ?=
# The demo's VMs, as NAME:PROFILE.
DEMO_VMS ?= demo-plain:default demo-nodebugfs:debugfs-off
DEMO_NAMES := $(foreach vm,$(DEMO_VMS),$(firstword $(subst :, ,$(vm))))

export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_FORCE_COLOR := 0
export PY_COLORS := 0
# A task that hangs (a wedged guest) fails after 10 minutes instead of stalling CI.
export ANSIBLE_TASK_TIMEOUT ?= 600

.PHONY: help deps venv collection lab-image demo demo-down test lint lint-ruff lint-mypy lint-py38 lint-ansible lint-galaxy \
        lint-docs format sanity sanity-all unit unit-all bench-configure bench-capture bench-fleet bench-perfetto bench-manifest bench-strategy integration changelog docs clean \
        $(addprefix venv-,$(CORE_VERSIONS)) $(addprefix sanity-,$(CORE_VERSIONS)) $(addprefix unit-,$(CORE_VERSIONS)) \
        $(addprefix molecule-,$(SCENARIOS)) $(KERNEL_MATRIX)

help:
	@echo "make demo         boot lab VMs ($(DEMO_NAMES)): mount policy, a traced session"
	@echo "                  captured to traces/<run_id>/, audit, teardown, run report"
	@echo "make test         lint, sanity, unit and integration tests"
	@echo "make lint | sanity | unit | integration | molecule-<scenario> | molecule-<scenario>@<kernel>"
	@echo "                  (sanity and unit: ansible-core $(CORE_TESTED); sanity-all, unit-all:"
	@echo "                  $(CORE_VERSIONS); one version: sanity-2.X, unit-2.X)"
	@echo "make format       ruff: fix what it can, then format"
	@echo "make bench-configure, bench-capture, bench-fleet, bench-perfetto, bench-manifest, bench-strategy (benchmarks under bench/)"
	@echo "make deps | venv | venv-2.X | lab-image | changelog | docs | clean"

deps:
	@$(ROOT)/tools/install-deps

$(VENV)/.installed: requirements-dev.txt
	@# A venv whose creation was interrupted has no pip: make it again.
	@test -x $(VENV)/bin/pip || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

# The older ansible-core minors' venvs: .venv-2.17, .venv-2.18.
$(ROOT)/.venv-%/.installed: requirements/ansible-core-%.txt
	@test -x $(@D)/bin/pip || { rm -rf $(@D); $(PYTHON) -m venv $(@D); }
	$(@D)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	@touch $@

$(addprefix venv-,$(CORE_OLDER)): venv-%: $(ROOT)/.venv-%/.installed
venv-$(CORE_NEWEST): venv

# The collection must sit under ansible_collections/tracefleet/ftrace for ansible
# to resolve tracefleet.ftrace.*: a symlink to this checkout.
collection:
	@mkdir -p $(dir $(LINK))
	@test -L $(LINK) || ln -sfn ../../../.. $(LINK)

lab-image: deps
	$(TRACELAB) build

demo: deps venv collection lab-image
	@for vm in $(DEMO_VMS); do \
		$(TRACELAB) up --name $${vm%%:*} --profile $${vm#*:}; \
	done
	$(TRACELAB) inventory $(addprefix --name=,$(DEMO_NAMES)) > build/demo-inventory.yml
	@status=0; ansible-playbook -i build/demo-inventory.yml playbooks/demo.yml || status=$$?; \
	if [ -z "$${KEEP:-}" ]; then \
		for name in $(DEMO_NAMES); do $(TRACELAB) down --name $$name; done; \
	else \
		echo "VMs kept: lab/tracelab ssh NAME ($(DEMO_NAMES)); make demo-down stops them"; \
	fi; \
	exit $$status

demo-down:
	@for name in $(DEMO_NAMES); do $(TRACELAB) down --name $$name; done

test: lint sanity unit integration
	@echo "make test: all tiers passed (lint, sanity and unit on ansible-core $(CORE_TESTED), integration)"

lint: lint-ruff lint-mypy lint-py38 lint-ansible lint-docs lint-galaxy

# Python: the linter and the formatter (configured in pyproject.toml).
lint-ruff: venv
	ruff check .
	ruff format --check .

# Types, each file once under the name it is imported by (the file list is in
# pyproject.toml): paths are printed relative to this checkout.
lint-mypy: venv collection
	mypy | sed 's#^build/collections/ansible_collections/tracefleet/ftrace/##'

# Target-side code must run on Python 3.8. os.splice (3.10) and
# os.waitstatus_to_exitcode (3.9) are only used behind hasattr() checks, which
# vermin cannot see.
lint-py38: venv
	vermin -t=3.8- --no-tips --violations --exclude os.splice --exclude os.waitstatus_to_exitcode $(TARGET_CODE)

lint-ansible: venv collection
	@# ansible-lint installs the collection it lints into ANSIBLE_HOME: keep that out of ~/.ansible
	ANSIBLE_HOME=$(ROOT)/build/ansible-home ansible-lint --profile production $(wildcard roles/*/ playbooks/)
	antsibull-changelog lint

# The plugins' and modules' documentation as antsibull-docs (docs.ansible.com) reads it:
# markup, references (M() to a module that exists, ...), option names. In the built
# collection, where ansible-doc finds it by its name.
lint-docs: venv collection
	cd $(ROOT)/build/collections/ansible_collections/tracefleet/ftrace && antsibull-docs lint-collection-docs --plugin-docs .

# What Galaxy does with an upload: the collection built as `ansible-galaxy collection
# publish` would send it, then galaxy-importer over the tarball with its default
# configuration (ansible-doc, ansible-lint --offline; no ansible-test, no network), in a
# venv of its own. Any WARNING or ERROR line fails the target. The sanity ignore files
# stay out of the artifact (build_ignore): every entry they may hold is for a file the
# collection does not ship (lab/, bench/), which the first check enforces - an ignore
# for a shipped file is one Galaxy would warn about.
GALAXY_VENV := $(ROOT)/.venv-galaxy
GALAXY_BUILD := $(ROOT)/build/galaxy

$(GALAXY_VENV)/.installed: requirements/galaxy-importer.txt
	@test -x $(@D)/bin/pip || { rm -rf $(@D); $(PYTHON) -m venv $(@D); }
	$(@D)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	@touch $@

lint-galaxy: venv $(GALAXY_VENV)/.installed
	@rm -rf $(GALAXY_BUILD) && mkdir -p $(GALAXY_BUILD)
	ansible-galaxy collection build --output-path $(GALAXY_BUILD) $(ROOT)
	@tarball=$$(ls $(GALAXY_BUILD)/*.tar.gz); \
	tar -tzf $$tarball > $(GALAXY_BUILD)/files.txt; \
	shipped=$$(awk '!/^[[:space:]]*(#|$$)/ {print $$1}' tests/sanity/ignore-*.txt | sort -u \
		| grep -xF -f $(GALAXY_BUILD)/files.txt || true); \
	if [ -n "$$shipped" ]; then \
		echo "lint-galaxy: tests/sanity/ignore-*.txt skip sanity tests of files the collection ships:" $$shipped >&2; \
		echo "lint-galaxy: Galaxy warns about every such entry; fix the finding instead of ignoring it" >&2; \
		exit 1; \
	fi; \
	echo "galaxy-importer $$(basename $$tarball)"; \
	status=0; \
	( cd $(GALAXY_BUILD) && unset ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH $$(compgen -e | grep '^GALAXY_IMPORTER_' || true) \
		&& GALAXY_IMPORTER_CONFIG=$(ROOT)/requirements/galaxy-importer.cfg PATH=$(GALAXY_VENV)/bin:$$PATH \
		python -m galaxy_importer.main $$(basename $$tarball) ) > $(GALAXY_BUILD)/importer.log 2>&1 || status=$$?; \
	grep -v '^Loading ' $(GALAXY_BUILD)/importer.log; \
	if [ $$status -ne 0 ] || grep -qE '^(WARNING|ERROR)' $(GALAXY_BUILD)/importer.log \
		|| ! grep -qx 'Importer processing completed successfully' $(GALAXY_BUILD)/importer.log; then \
		echo "lint-galaxy: galaxy-importer found problems (exit status $$status; full log: $(GALAXY_BUILD)/importer.log)" >&2; \
		exit 1; \
	fi

format: venv
	ruff check --fix --silent --exit-zero .
	ruff format .
	ruff check .

# Sanity and unit tests per ansible-core minor (sanity-2.17, unit-2.19, ...). The
# first sanity run of a minor builds ansible-test's venvs (minutes, cached in
# ~/.ansible/test/venv for the next runs).
sanity: $(addprefix sanity-,$(CORE_TESTED))
sanity-all: $(addprefix sanity-,$(CORE_VERSIONS))
$(addprefix sanity-,$(CORE_VERSIONS)): sanity-%: deps venv-%
	$(ROOT)/tools/sanity --core-venv $(call core_venv,$*)

unit: $(addprefix unit-,$(CORE_TESTED))
unit-all: $(addprefix unit-,$(CORE_VERSIONS))
$(addprefix unit-,$(CORE_VERSIONS)): unit-%: venv-% collection
	@echo "unit: ansible-core $*"
	PATH=$(call core_venv,$*)/bin:$$PATH python -m pytest -q tests/unit

integration: deps venv collection lab-image
	$(ROOT)/tools/run-scenarios $(if $(INTEGRATION_JOBS),--jobs $(INTEGRATION_JOBS)) $(INTEGRATION_RUNS)

$(addprefix molecule-,$(SCENARIOS)): molecule-%: deps venv collection lab-image
	molecule test --scenario-name $*

# molecule-state@6.12: a scenario on another kernel series.
$(KERNEL_MATRIX): deps venv collection lab-image
	TRACELAB_KERNEL=$(lastword $(subst @, ,$@)) molecule test --scenario-name $(patsubst molecule-%,%,$(firstword $(subst @, ,$@)))

# Benchmarks: ratios within one run on one lab VM, never timed assertions.
bench-configure: deps venv collection lab-image
	$(ROOT)/bench/configure

bench-capture: deps venv collection lab-image
	$(ROOT)/bench/capture

# The controller's cost per host at 1, 4, 16 and 64 hosts (lab aliases on 4 VMs; takes
# long under TCG): bench/fleet --help for the options, FLEET_ARGS to pass them.
bench-fleet: deps venv collection lab-image
	$(ROOT)/bench/fleet $(FLEET_ARGS)

# Controller only: the Perfetto export's CPU time and peak memory per million events.
bench-perfetto: deps venv collection
	$(ROOT)/bench/perfetto

# Controller only: what filing one more host into a run's manifest costs at 100, 1,000
# and 5,000 hosts (BENCH_MANIFEST_ARGS: bench/manifest --help).
bench-manifest: venv collection
	$(ROOT)/bench/manifest $(BENCH_MANIFEST_ARGS)

# Controller only: the CPU the controller spends waiting for a free fork, with
# ansible.builtin.linear and with tracefleet.ftrace.linear (BENCH_STRATEGY_ARGS:
# bench/strategy --help).
bench-strategy: venv collection
	$(ROOT)/bench/strategy $(BENCH_STRATEGY_ARGS)

changelog: venv
	antsibull-changelog release

docs: venv collection
	@mkdir -p build/docs
	antsibull-docs collection --use-current --dest-dir build/docs tracefleet.ftrace
	@echo "module docs rendered under build/docs"

clean:
	-$(TRACELAB) down --all
	rm -rf build tests/output .pytest_cache
