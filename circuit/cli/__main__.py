"""`python -m circuit.cli` runs the CLI."""

from circuit.cli.app import main

main()
