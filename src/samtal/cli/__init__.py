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


#: What `samtal --help` (and a group's) says of each command: whole sentences that fit its
#: column (click would cut the first sentence of the full help mid-word).
SUMMARIES = {
    "aggregate": "Turn events (NDJSON) into call records, offline.",
    "simulate": "Make realistic switchboard traffic as events.",
    "org": "Organisations (tenants): add, set, list.",
    "erase": "Erase calls for good, by call or by number.",
    "token": "API tokens: create, list, revoke.",
    "webhook": "Webhook subscriptions: add, list, remove, replay.",
    "import": "Load events (NDJSON) into the database.",
    "serve": "Serve the API.",
    "demo": "Load a week of realistic calls and serve them.",
    "publish": "Publish events to NATS JetStream.",
    "consume": "Store events from NATS JetStream, as a worker.",
    "sync": "Keep a copy of the call records in your own database.",
    "stats": "Figures and a report from your copy.",
    "token create": "Create a token (shown once).",
    "token list": "List the tokens.",
    "token revoke": "Revoke a token.",
    "org add": "Add an organisation.",
    "org list": "List the organisations.",
    "org set": "Change an organisation's retention.",
    "webhook add": "Subscribe a URL to an organisation's new versions.",
    "webhook list": "List the subscriptions and how they are going.",
    "webhook remove": "Remove a subscription.",
    "webhook replay": "Deliver versions again from a seq.",
}

for command in (
    tools.aggregate,
    tools.simulate,
    admin.org,
    admin.token,
    admin.webhook,
    admin.import_,
    admin.erase,
    serve.serve,
    serve.demo,
    broker.publish,
    broker.consume,
    client.sync,
    client.stats,
):
    main.add_command(command)


def _summarise(group: click.Group, prefix: str = "") -> None:
    for name, command in group.commands.items():
        command.short_help = SUMMARIES.get(prefix + name, command.short_help)
        if isinstance(command, click.Group):
            _summarise(command, f"{prefix}{name} ")


_summarise(main)
