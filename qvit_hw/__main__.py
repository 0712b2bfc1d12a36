"""``python -m qvit_hw``: the same command line as ``qvit-hw``."""

from .cli import main

if __name__ == "__main__":
    main()
