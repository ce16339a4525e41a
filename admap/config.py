"""Command configuration: one dataclass per command, turned into CLI flags and YAML schemas.

Fields carry their help text in ``metadata["help"]``; nested dataclasses (such as `LoadOptions`)
become flat flags. A YAML file (``--config``) gives defaults that flags override; unknown keys
are refused with the list of known ones.

A `registered` field holds the options of every entry of a registry (scorers, selection
strategies), each entry declaring its own ``Options`` dataclass: flags ``--<entry>-<field>``, and in
YAML a mapping under the entry's name beside the config's other keys. The registry is read when
the parser is built, so that an entry registered by any module is configurable with no other edit.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def option(
    default: Any = dataclasses.MISSING, help: str = "", *, positional: bool = False, prefix: str = "", **kwargs: Any
) -> Any:
    """A config field with its help text. ``prefix`` (for a nested dataclass) goes before each of its
    flags, so that two nested configs of one type (a proxy generator and a judge) get distinct flags.

    A nested dataclass's default may set some of its fields (``GeneratorOptions(max_new_tokens=384)``):
    those stay when a YAML section or a flag sets other fields of it (``overrides`` in the metadata)."""
    metadata = {"help": help, "positional": positional, "prefix": prefix}
    if dataclasses.is_dataclass(default):
        metadata["overrides"] = _set_fields(default)
        return dataclasses.field(default_factory=lambda: dataclasses.replace(default), metadata=metadata, **kwargs)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def _set_fields(instance: Any) -> dict[str, Any]:
    """The fields of a dataclass instance that differ from its class's defaults, nested as `build` reads them."""
    try:
        plain = to_dict(type(instance)())
    except TypeError:  # required fields: every field is set
        return to_dict(instance)
    return _differences(to_dict(instance), plain)


def _differences(values: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    changed = {}
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(baseline.get(key), dict):
            inner = _differences(value, baseline[key])
            if inner:
                changed[key] = inner
        elif value != baseline.get(key):
            changed[key] = value
    return changed


class Registered:
    """The options of a registry's entries by entry name: those given, else each entry's defaults.

    An entry declares its options as a dataclass ``Options`` on its class; an entry without one
    has no options (``self[name]`` is None).
    """

    def __init__(self, registry: Any, given: Mapping[str, Any] | None = None):
        self.registry = registry
        self._given = dict(given or {})
        for name in self._given:
            registry.get(name)  # an unknown entry gets close matches

    def __getitem__(self, name: str) -> Any:
        if name in self._given:
            return self._given[name]
        options_class = entry_options(self.registry.get(name))
        return options_class() if options_class else None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Registered) and self.registry is other.registry and self._given == other._given

    def __repr__(self) -> str:
        return f"Registered({self.registry.kind!r}, {self._given!r})"


def entry_options(entry: Any) -> type | None:
    """The options dataclass a registered entry declares, or None."""
    options_class = getattr(entry, "Options", None)
    return options_class if dataclasses.is_dataclass(options_class) else None


def registered(registry: Any, *, selector: str, help: str = "") -> Any:
    """A field holding each entry's options of ``registry``; ``selector`` names the sibling field that
    chooses the entry in use, whose options alone `to_dict` records."""
    metadata = {"help": help, "registry": registry, "selector": selector}
    return dataclasses.field(default_factory=lambda: Registered(registry), metadata=metadata)


def _registered_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init and "registry" in f.metadata]


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


class Leaf(typing.NamedTuple):
    """One flag: where its value goes in the nested config, its name, its field and type, and whose
    option it is when a registered entry owns it (``scorer judge: ``, shown before its help)."""

    path: tuple[str, ...]
    name: str
    field: dataclasses.Field
    kind: Any
    owner: str = ""


def _leaf_fields(cls: type, prefix: str = "", owner: str = "") -> list[Leaf]:
    """A `Leaf` for every non-dataclass field, nested dataclasses and registered entries flattened."""
    hints = typing.get_type_hints(cls)
    leaves = []
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        kind = hints[field.name]
        if "registry" in field.metadata:
            # Each entry's options sit under the entry's name, beside this config's own fields.
            registry = field.metadata["registry"]
            for entry_name in registry:
                options_class = entry_options(registry.get(entry_name))
                if options_class is None:
                    continue
                if entry_name in {f.name for f in dataclasses.fields(cls)}:
                    raise TypeError(f"{cls.__name__}: registered {entry_name!r} has the name of a field")
                inner = _leaf_fields(options_class, prefix + entry_name + "_", f"{registry.kind} {entry_name}: ")
                leaves += [leaf._replace(path=(entry_name, *leaf.path)) for leaf in inner]
        elif dataclasses.is_dataclass(kind):
            inner = _leaf_fields(kind, prefix + field.metadata.get("prefix", ""), owner)
            leaves += [leaf._replace(path=(field.name, *leaf.path)) for leaf in inner]
        else:
            leaves.append(Leaf((field.name,), prefix + field.name, field, kind, owner))
    return leaves


def _yaml_mapping(text: str) -> dict[str, Any]:
    value = yaml.safe_load(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a YAML mapping such as '{{beta: 0.1}}', got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, positionals: bool = True) -> None:
    """One flag per field (``--field-name``); booleans become ``--flag/--no-flag``; mappings take
    YAML (``--dpo '{beta: 0.1}'``). ``positionals=False`` turns positional fields into flags, for a
    command whose one positional argument is its config file."""
    seen: set[str] = set()
    for _, name, field, annotation, owner in _leaf_fields(cls):
        if name in seen:
            raise TypeError(f"{cls.__name__}: field name {name!r} appears twice once flattened")
        seen.add(name)
        kind, optional = _unwrap_optional(annotation)
        # argparse %-formats help strings: a literal "%" ("5% of them") must reach it doubled.
        help_text = (owner + field.metadata.get("help", "")).replace("%", "%%")
        default = field.default if field.default is not dataclasses.MISSING else None
        shown_default = str(default).replace("%", "%%")
        if field.metadata.get("positional") and positionals:
            has_default = optional or field.default is not dataclasses.MISSING
            nargs = "+" if typing.get_origin(kind) is list else ("?" if has_default else None)
            parser.add_argument(name, nargs=nargs, default=argparse.SUPPRESS, help=help_text)
            continue
        flag = "--" + name.replace("_", "-")
        if kind is dict or typing.get_origin(kind) is dict:
            parser.add_argument(
                flag, type=_yaml_mapping, default=argparse.SUPPRESS, dest=name, metavar="YAML", help=help_text
            )
        elif typing.get_origin(kind) is list:
            item = (typing.get_args(kind) or (str,))[0]
            parser.add_argument(flag, type=item, nargs="+", default=argparse.SUPPRESS, dest=name, help=help_text)
        elif kind is bool:
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=f"{help_text} (default: {shown_default})",
            )
        else:
            choices = typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else None
            convert = type(choices[0]) if choices else kind
            parser.add_argument(
                flag,
                type=convert,
                choices=choices,
                default=argparse.SUPPRESS,
                dest=name,
                metavar=None if choices else name.upper(),
                help=f"{help_text} (default: {shown_default})",
            )


def _nest(cls: type, flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for path, name, *_ in _leaf_fields(cls):
        if name in flat:
            target = nested
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = flat[name]
    return nested


def _registered_entries(cls: type) -> dict[str, str]:
    """The registry entries with options of each `registered` field of ``cls``: entry name -> field name."""
    groups = {field.name: field.metadata["registry"] for field in _registered_fields(cls)}
    return {
        entry: group for group, registry in groups.items() for entry in registry if entry_options(registry.get(entry))
    }


def known_keys(cls: type) -> set[str]:
    """The keys `build` reads for ``cls``: its fields, less each `registered` field, plus that field's entries."""
    groups = {field.name for field in _registered_fields(cls)}
    return {f.name for f in dataclasses.fields(cls) if f.init} - groups | set(_registered_entries(cls))


def build(cls: type[T], values: dict[str, Any], *, source: str = "config") -> T:
    """Instantiate ``cls`` from nested ``values``, refusing unknown keys by name."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    groups = {field.name: field.metadata["registry"] for field in _registered_fields(cls)}
    entries = _registered_entries(cls)
    unknown = sorted(set(values) - known_keys(cls))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown} for {cls.__name__}; known: {sorted(known_keys(cls))}")
    kwargs: dict[str, Any] = {}
    given: dict[str, dict[str, Any]] = {group: {} for group in groups}
    for name, value in values.items():
        if name in entries:
            if not isinstance(value, dict):
                raise ValueError(f"{source}: '{name}' must be a mapping")
            registry = groups[entries[name]]
            given[entries[name]][name] = build(entry_options(registry.get(name)), value, source=f"{source}.{name}")
            continue
        if dataclasses.is_dataclass(hints[name]):
            if not isinstance(value, dict):
                raise ValueError(f"{source}: '{name}' must be a mapping")
            value = deep_merge(known[name].metadata.get("overrides", {}), value)
            value = build(hints[name], value, source=f"{source}.{name}")
        kwargs[name] = value
    for group, registry in groups.items():
        if group in values:
            raise ValueError(f"{source}: give each entry's options under its own name, not under {group!r}")
        kwargs[group] = Registered(registry, given[group])
    return cls(**kwargs)


def read_yaml(path: str | Path) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must be a mapping of keys to values")
    return data


def from_arguments(cls: type[T], namespace: argparse.Namespace) -> T:
    """Defaults, then the YAML file in ``namespace.config`` if any, then the flags given."""
    flags = {k: v for k, v in vars(namespace).items() if k not in ("config", "command", "handler")}
    values: dict[str, Any] = {}
    config_path = getattr(namespace, "config", None)
    if config_path:
        values = read_yaml(config_path)
        build(cls, values, source=str(config_path))  # validate the file on its own first
    values = deep_merge(values, _nest(cls, flags))
    return build(cls, values, source=str(config_path or "command line"))


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, mapping into mapping, so that a flag (or a sweep
    value) changes one key of a nested section instead of replacing the section."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain data, in the shape `build` reads: a registered field contributes the
    options of its selected entry alone, under the entry's name."""
    if not dataclasses.is_dataclass(config):
        return config
    values: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if "registry" in field.metadata:
            selected = getattr(config, field.metadata["selector"])
            # A selector may name no entry at all (generator "none").
            options = value[selected] if selected in value.registry else None
            if options is not None:
                values[selected] = to_dict(options)
        elif dataclasses.is_dataclass(value):
            values[field.name] = to_dict(value)
        else:
            values[field.name] = copy.deepcopy(value)
    return values
