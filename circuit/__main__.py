"""`python -m circuit` runs the CLI, as `circuit` does."""

from circuit.cli.app import main

main()
