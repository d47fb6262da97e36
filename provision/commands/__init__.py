"""One module per CLI subcommand (``<name>_cmd.py``), each exposing ``register(subparsers)``.

``register`` adds the subcommand's parser and sets ``func`` (``Callable[[Namespace], int]``)
as its default; :mod:`provision.cli` lists the modules in ``COMMAND_MODULES``.
"""
