"""The ``jdobb-queue`` command line, one module per role.

- :mod:`.app`: the typer app, its global options and the queue commands
- :mod:`.inputs`: turning command-line text (URL, JSON, times) into values, or a usage error
- :mod:`.render`: rich tables and panels, and the ``--json`` output
- :mod:`.follow`: ``status --follow``, a live progress bar fed by the Broadcaster
- :mod:`.serve`: the ``worker`` command: load the user's Worker, log outcomes, handle signals
- :mod:`.boundary`: ``main()``, where every error becomes one line on stderr and an exit code

Everything here is private; the public entry point is :func:`jdobb_async_queue.cli.main`.
"""
