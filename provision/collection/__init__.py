"""The Ansible collection ``coralpi.coral``: made from ``playbooks/`` (``build``), its
roles' argument specs generated from the variables registry (``specs``), and what its
action plugins call (``actions``)."""
