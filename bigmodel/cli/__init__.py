"""The `bigmodel` command: run the system (up, api, worker) and talk to a running API."""

from __future__ import annotations

import click

from bigmodel.cli import client_cmds, serve


@click.group()
@click.version_option(package_name="bigmodel")
def cli() -> None:
    """bigmodel: a job system for machine learning."""


for command in (*serve.COMMANDS, *client_cmds.COMMANDS):
    cli.add_command(command)


def main() -> None:
    """Entry point of the console script."""
    cli()
