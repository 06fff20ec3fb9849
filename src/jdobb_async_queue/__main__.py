"""``python -m jdobb_async_queue``: the ``jdobb-queue`` command line."""

from .cli import main

if __name__ == "__main__":
    main()
