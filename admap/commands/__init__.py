"""The `admap` commands, one module each (``admap/commands/<name>.py`` is ``admap <name>``): its
configuration dataclass (flags and YAML come from it) and the I/O around the pure stages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path


@dataclass(frozen=True)
class Command:
    """``run(config, progress=..., command=...)`` does the work and returns the path it wrote."""

    name: str
    config: type
    run: Callable[..., Path]
    help: str


# In the order `admap --help` lists them.
COMMAND_MODULES = ("map", "select", "proxy", "compare", "diagnose", "neighbours", "view", "push", "bench")


def commands() -> dict[str, Command]:
    """Every command by name, each imported from its own module."""
    found = (import_module(f"admap.commands.{module}").COMMAND for module in COMMAND_MODULES)
    return {command.name: command for command in found}
