# Copyright: coralpi contributors
# Apache License 2.0 (see the coralpi package's metadata)
"""coralpi.coral.plan: documentation only (the action plugin of that name does the work)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: plan
short_description: Plan a host for the Coral Edge TPU with coralpi's matrix
version_added: "0.1.0"
description:
  - Runs on the controller. Checks the host's C(coralpi_*) settings and role variables as
    C(coralpi plan) checks an inventory, then resolves the host's plan from its facts with
    the coralpi package's support matrix (the code C(coralpi plan) and C(coralpi apply) use).
  - Needs the coralpi Python package in the Python that runs ansible-playbook
    (C(pip install coralpi) beside ansible-core).
  - Changes nothing on the host; runs in check mode.
options:
  facts:
    description:
      - What C(tasks/probe_facts.yml) gathers (C(coralpi_probe_facts)).
    type: dict
    required: true
author:
  - coralpi contributors
"""

EXAMPLES = r"""
- name: Plan this host
  coralpi.coral.plan:
    facts: "{{ coralpi_probe_facts }}"
  register: coralpi_plan_made
"""

RETURN = r"""
plan:
  description: The plan, as C(coralpi plan --json) shows it (without artifacts).
  returned: success
  type: dict
reasons:
  description: Why the matrix chose what it chose, one line each.
  returned: success
  type: list
  elements: str
"""
