"""A registry by name for interchangeable implementations (loaders, scorers, generators, strategies)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to implementations; a duplicate name is an error, an unknown one gets suggestions."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = entry
            return entry

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            known = ", ".join(sorted(self._entries))
            raise KeyError(f"unknown {self.kind} '{name}'{hint} (known: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))


PLUGIN_GROUP = "admap.plugins"


def load_plugins() -> list[str]:
    """Import every module that installed packages name under the ``admap.plugins`` entry-point group,
    so that the scorers, formats, generators and strategies they register reach the command line.
    Returns the names of the entry points loaded."""
    from importlib.metadata import entry_points

    loaded = []
    for entry_point in entry_points(group=PLUGIN_GROUP):
        try:
            entry_point.load()
        except Exception as error:
            raise ImportError(
                f"admap plugin {entry_point.name!r} ({entry_point.value}) failed to load: {error}"
            ) from error
        loaded.append(entry_point.name)
    return loaded
