"""Build typed, validated dataclasses from YAML-like mappings.

Every configuration in ecgi is a tree of dataclasses.  ``from_mapping`` walks
the dataclass fields and the input together, so an unknown key, a missing
required key or a value of the wrong type is reported with its dotted path
(``time.dt_ms: expected a number, got 'fast'``) before anything runs.  Each
dataclass may define ``validate(self)`` for checks between fields; it raises
``ConfigError`` and is called after the fields are converted.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, TypeVar, Union

import yaml

from .errors import ConfigError

T = TypeVar("T")


#: Largest configuration file read (bytes); configurations are a few KiB.
MAX_YAML_BYTES = 1 << 20
#: Most values a YAML document may hold once its aliases are expanded: a
#: few aliases nested in each other ("billion laughs") would otherwise expand
#: to billions of values when the document is walked.
MAX_YAML_NODES = 1_000_000
#: Deepest nesting of mappings and lists: ecgi's configurations nest five
#: levels; a document nested a thousand deep (a few KiB of brackets) would
#: exhaust Python's recursion while it is read.
MAX_YAML_DEPTH = 64


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses nesting deeper than MAX_YAML_DEPTH
    while composing, before the recursion reaches Python's limit."""

    def __init__(self, stream: str, name: str):
        super().__init__(stream)
        self.depth, self.name = 0, name

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise ConfigError(f"{self.name}: mappings and lists nested more than {MAX_YAML_DEPTH} levels deep "
                                  "(a configuration nests a few); is this the right file?")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file, turning I/O and syntax problems into ConfigError.

    Every YAML file ecgi reads goes through here: size and alias expansion
    are bounded, and only plain values are built (``yaml.SafeLoader``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such configuration file")
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size} bytes; a configuration file is at most "
                              f"{MAX_YAML_BYTES} bytes (is this the right file?)")
        text = path.read_text()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; expected a YAML configuration") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, name: str = "<string>") -> Any:
    """``yaml.safe_load`` with alias expansion bounded by MAX_YAML_NODES and
    nesting by MAX_YAML_DEPTH."""
    try:
        loader = _BoundedLoader(text, name)
    except yaml.YAMLError as exc:  # the reader refuses control characters up front
        raise ConfigError(f"{name}: not valid YAML: {' '.join(str(exc).split())[:300]}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_YAML_NODES:
            raise ConfigError(f"{name}: the YAML document expands to {size:.3g} values (aliases nested in "
                              f"aliases?); at most {MAX_YAML_NODES} are accepted")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError(f"{name}: not valid YAML: {reason}") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Number of values once every alias is copied out (shared nodes counted once per use)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a recursive alias counts once rather than looping
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = size
    return size


def load_file(path: str | Path, convert: Callable[[Any], T]) -> T:
    """Parse a YAML file and ``convert`` it; a ConfigError names the file."""
    data = load_yaml(path)
    try:
        return convert(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def from_mapping(cls: type[T], data: Any, where: str = "") -> T:
    """Convert ``data`` (parsed YAML) to an instance of dataclass ``cls``."""
    return _convert(cls, data, where or cls.__name__)


def to_mapping(obj: Any) -> Any:
    """The inverse of ``from_mapping``: plain dicts, lists and scalars."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_mapping(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_mapping(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # numpy scalar
        return obj.item()
    return obj


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {_show(value)} fits none of the allowed forms ({'; '.join(errors)})")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {_show(value)} is not one of {', '.join(map(repr, args))}")
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_show(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {_show(value)}")
        key_t, val_t = args if args else (Any, Any)
        return {_convert(key_t, k, where): _convert(val_t, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_show(value)}")
        number = float(value) if abs(value) < 1e308 else math.inf  # a huge int would overflow float()
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {_show(value)}")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_show(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_show(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_show(value)}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {_show(value)}")
        return Path(value)
    raise TypeError(f"typedconfig cannot convert to {tp!r} at {where}")


def _convert_dataclass(cls: type, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(value) and isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping with keys {', '.join(_field_names(cls))}, got {_show(value)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys: {', '.join(fields)}"
        )
    kwargs = {}
    for name, f in fields.items():
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {name!r}")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return obj


def _show(value: Any, limit: int = 200) -> str:
    """A value for an error message, cut short: a message must stay one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]
