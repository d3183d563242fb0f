"""``python -m veo_async``: the ``veo-async`` command line."""

from .cli import main

if __name__ == "__main__":
    main()
