"""The ``lienthong`` command: one module per command group, assembled in :mod:`services.tools.cli.main`."""
