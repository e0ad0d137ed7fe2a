"""`python -m geoheat` runs the command line."""

from .cli import main

main()
