"""`python -m pooldrop` runs the CLI."""

from pooldrop.cli import main

main()
