"""Planning: what a host is and what it gets.

``targets`` (a host's facts and the user's choices), ``inventory`` (hosts and their
``coralpi_*`` variables), ``probe`` (the read-only play that gathers the facts),
``matrix`` over ``matrix.toml`` via ``matrix_data`` (host -> plan, pure) and ``plan``
(the typed plan). Nothing here runs a playbook except ``probe``, through
:mod:`provision.driver`.
"""
