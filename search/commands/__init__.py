"""Subcommands of `optforge`, one module per group (see `search.cli`)."""
