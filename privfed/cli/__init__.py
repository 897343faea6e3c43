"""The ``privfed`` command line. Each command lives in its own module and is imported only when used."""

from __future__ import annotations

import importlib

import click

__all__ = ["main"]

_COMMANDS = {
    "run": "privfed.cli.run:run",
    "compare": "privfed.cli.compare:compare",
    "bench": "privfed.cli.bench:bench",
    "privacy": "privfed.cli.privacy:privacy",
    "plan": "privfed.cli.plan:plan",
    "audit": "privfed.cli.audit:audit",
    "keys": "privfed.cli.keys:keys",
    "vertical": "privfed.cli.vertical:vertical",
    "schema": "privfed.cli.schema:schema",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in _COMMANDS if self.get_command(ctx, name) is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = _COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # command not built yet
                return None
            raise
        return getattr(module, attribute)


@click.group(cls=_LazyGroup)
@click.version_option(package_name="privfed")
def main() -> None:
    """privfed: privacy-protected federated learning of LSTM/GRU models, with the cost of each protection."""
