"""`python -m genlab ...` is the `genlab` command."""

from .cli import main

main()
