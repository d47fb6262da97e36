"""The ansible-playbook driver (``runner``): one run with per-host events.

A floor below planning (the probe play) and the fleet run (apply, verify), which both use it.
"""
