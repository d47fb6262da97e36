"""The fleet run: ``run`` (apply and verify over an inventory: plans, artifacts, the
playbooks, the report), ``progress`` (live per-host lines) and ``report`` (the fleet
table and JSON)."""
