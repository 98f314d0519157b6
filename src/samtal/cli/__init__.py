"""The `samtal` command line: thin commands that parse options and call the library.

Each command imports what it needs when it runs, so that `samtal aggregate --help` does not pay
for the web server: `tools` (offline: aggregate, simulate), `admin` (organisations, tokens,
import, webhooks) and `serve` (the API and the demo).
"""

from __future__ import annotations

import click

from samtal.cli import admin, broker, client, serve, tools


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="samtal")
def main() -> None:
    """samtal: call history for cloud phone systems."""


for command in (
    tools.aggregate,
    tools.simulate,
    admin.org,
    admin.token,
    admin.webhook,
    admin.import_,
    serve.serve,
    serve.demo,
    broker.publish,
    broker.consume,
    client.sync,
    client.stats,
):
    main.add_command(command)
