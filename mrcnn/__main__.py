"""``python -m mrcnn``: the ``mrcnn`` command (see `mrcnn.cli`)."""

from mrcnn.cli import run

if __name__ == "__main__":
    run()
