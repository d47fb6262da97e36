"""Artifacts: every file a host installs, downloaded once and pinned.

``service`` (lock, fetch and per-host artifacts: what the other stages call), ``lockfile``
(the ``coralpi.lock`` format, pure), ``cache`` (content-addressed files), ``downloads``
(one checked download), ``wheels`` (pip's resolver for a target platform) and
``keyring`` (the Coral key, fingerprint-checked).
"""
