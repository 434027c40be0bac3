"""Command-line entry points: thin top-level scripts call `app.cli.<name>.main(argv)`."""
