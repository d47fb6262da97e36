# Copyright: coralpi contributors
# Apache License 2.0 (see the coralpi package's metadata)
"""coralpi.coral.artifacts: documentation only (the action plugin of that name does the work)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: artifacts
short_description: Fill the controller's coralpi cache with the files of a host's plan
version_added: "0.1.0"
description:
  - Runs on the controller. Plans the host as M(coralpi.coral.plan) does, then downloads
    and checks the plan's wheels, runtime .debs, Coral keyring and smoke-test assets into
    the controller's cache (pinned by the lock when it covers the host's platform), exactly
    as C(coralpi apply) does, and returns where they are.
  - Safe in parallel forks - hosts of one platform wait for each other on the cache's file
    lock and download once.
  - Needs the coralpi Python package in the Python that runs ansible-playbook.
options:
  facts:
    description:
      - What C(tasks/probe_facts.yml) gathers (C(coralpi_probe_facts)).
    type: dict
    required: true
  lock:
    description:
      - A C(coralpi.lock) file that pins the files (C(coralpi lock) writes one). Platforms it
        does not pin are resolved and added to it.
      - Without one, each file is resolved from its source and checked as C(coralpi apply)
        without C(--lock) does.
    type: path
  cache_dir:
    description:
      - The artifact cache (default C($CORALPI_CACHE_DIR), else C($XDG_CACHE_HOME/coralpi)).
    type: path
author:
  - coralpi contributors
"""

EXAMPLES = r"""
- name: Get the plan's files into the controller's cache
  coralpi.coral.artifacts:
    facts: "{{ coralpi_probe_facts }}"
    lock: "{{ playbook_dir }}/coralpi.lock"
  register: coralpi_artifacts_made
"""

RETURN = r"""
artifacts:
  description: Controller paths of the files (the plan's C(artifacts) entry).
  returned: success
  type: dict
"""
