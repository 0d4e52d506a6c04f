"""Parameter validation: the one check every stage, notebook and command goes through.

A stage declares its parameters as a frozen dataclass. :func:`validate` builds it from a mapping
(unknown names and wrong types are errors, not silent defaults); :func:`from_namespace` takes a
notebook's global namespace, because papermill only *warns* about unknown names.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Mapping

#: Names that are not notebook parameters even though they sit in a notebook's namespace.
NAMESPACE_NOISE = {"In", "Out", "exit", "quit", "get_ipython", "open"}


class ParameterError(ValueError):
    """A parameter is unknown, of the wrong type, or out of range. The message names it."""


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin is typing.Union or origin is types.UnionType:
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def validate(params_cls: type, values: Mapping[str, Any]):
    """Build ``params_cls`` from ``values``; unknown names and wrong types are errors.

    Values missing from ``values`` take the dataclass default. Integers are accepted where a
    float is declared and converted, so ``lr: 1`` in YAML works.
    """
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, list(fields), n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ParameterError(
            f"unknown parameter(s) for {params_cls.__name__}: {', '.join(hints)}; "
            f"known: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(params_cls)
    resolved = {}
    for name, value in values.items():
        if not _type_ok(value, hints[name]):
            raise ParameterError(
                f"parameter {name!r} must be {hints[name]}, got {type(value).__name__} {value!r}")
        if hints[name] is float and isinstance(value, int):
            value = float(value)
        resolved[name] = value
    params = params_cls(**resolved)
    check = getattr(params, "check", None)
    if check is not None:
        check()  # stage-specific ranges: raises ParameterError naming the parameter
    return params


def from_namespace(params_cls: type, namespace: Mapping[str, Any]):
    """Validate the parameters a notebook holds in its global namespace.

    Everything public that is not a module, function, class or IPython's own is taken as a
    parameter, so an injected ``n_derivatons = 5`` is reported instead of ignored.
    """
    values = {}
    for name, value in namespace.items():
        if name.startswith("_") or name in NAMESPACE_NOISE:
            continue
        if isinstance(value, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)):
            continue
        if callable(value) and not isinstance(value, (list, dict, str)):
            continue
        values[name] = value
    return validate(params_cls, values)


def params_dict(params) -> dict:
    return dataclasses.asdict(params)
