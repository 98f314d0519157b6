"""`python -m samtal` runs the command line."""

from samtal.cli import main

if __name__ == "__main__":  # not when a spawned process (an import's decoder) loads it
    main()
