"""The command line (`cosim ...`): the only place that configures logging and turns errors into
exit codes. Nothing but the CLI imports it."""
from cosim.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
