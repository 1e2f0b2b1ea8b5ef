# tracefleet.ftrace — developer entry points.
#
#   make demo          boot two lab VMs and run the demo playbook against them
#   make test          lint + sanity + unit + integration (molecule on lab VMs)
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

.PHONY: help deps venv collection lab-image demo demo-down test lint sanity unit bench-configure bench-capture \
        integration $(addprefix molecule-,$(SCENARIOS)) changelog docs clean

help:
	@echo "make demo         boot lab VMs ($(DEMO_NAMES)): mount policy, a traced session"
	@echo "                  captured to traces/<run_id>/, audit, teardown, run report"
	@echo "make test         lint, sanity, unit and integration tests"
	@echo "make lint | sanity | unit | integration | molecule-<scenario>"
	@echo "make bench-configure, make bench-capture (benchmarks under bench/)"
	@echo "make deps | venv | lab-image | changelog | docs | clean"

deps:
	@$(ROOT)/tools/install-deps

$(VENV)/.installed: requirements-dev.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

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
	@echo "make test: all tiers passed (lint, sanity, unit, integration)"

lint: venv collection
	@# ansible-lint installs the collection it lints into ANSIBLE_HOME: keep that out of ~/.ansible
	ANSIBLE_HOME=$(ROOT)/build/ansible-home ansible-lint --profile production $(wildcard roles/*/ playbooks/)
	antsibull-changelog lint

sanity: deps venv
	$(ROOT)/tools/sanity

unit: venv collection
	python -m pytest -q tests/unit

integration: deps venv collection lab-image $(addprefix molecule-,$(SCENARIOS))

$(addprefix molecule-,$(SCENARIOS)): molecule-%: deps venv collection lab-image
	molecule test --scenario-name $*

# Benchmarks: ratios within one run on one lab VM, never timed assertions.
bench-configure: deps venv collection lab-image
	$(ROOT)/bench/configure

bench-capture: deps venv collection lab-image
	$(ROOT)/bench/capture

changelog: venv
	antsibull-changelog release

docs: venv collection
	@mkdir -p build/docs
	antsibull-docs collection --use-current --dest-dir build/docs tracefleet.ftrace
	@echo "module docs rendered under build/docs"

clean:
	-$(TRACELAB) down --all
	rm -rf build tests/output .pytest_cache
