"""``python -m veo_async.cli``: the same as ``veo-async`` (and ``python -m veo_async``)."""

from . import main

if __name__ == "__main__":
    main()
