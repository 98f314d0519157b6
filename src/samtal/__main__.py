"""`python -m samtal` runs the command line."""

from samtal.cli import main

main()
