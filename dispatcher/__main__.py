"""``python -m dispatcher`` runs the ``blueprint-faas`` command (workers start this way)."""

from dispatcher.cli import main

main()
