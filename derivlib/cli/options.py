"""Command-line options generated from a stage's ``Params``, so a command and its notebook take
the same names (``--batch-size`` for ``batch_size``), types and defaults."""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path

#: Parameters a command never offers: the profile labels notebook runs only.
NOT_OPTIONS = ("profile",)


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected JSON, got {text!r} ({err.msg})") from None


def _converter(kind):
    origin = typing.get_origin(kind) or kind
    if kind is bool:
        return _boolean, "BOOL"
    if origin in (dict, list, tuple):
        return _json, "JSON"
    if kind in (int, float, str):
        return kind, None
    return str, None


def add_params_arguments(parser, params_cls, required: tuple[str, ...] = (),
                         skip: tuple[str, ...] = NOT_OPTIONS, helps: dict | None = None) -> None:
    """One ``--option`` per field of ``params_cls``, typed and defaulted as declared.

    Options left out keep the dataclass default, so :func:`values` passes only what was given."""
    hints = typing.get_type_hints(params_cls)
    helps = helps or {}
    for field in dataclasses.fields(params_cls):
        if field.name in skip:
            continue
        convert, metavar = _converter(hints[field.name])
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        shown = json.dumps(default) if metavar == "JSON" else default
        text = helps.get(field.name, "")
        parser.add_argument("--" + field.name.replace("_", "-"), dest=field.name, type=convert,
                            metavar=metavar, required=field.name in required, default=argparse.SUPPRESS,
                            help=(text + " " if text else "") + ("(required)" if field.name in required
                                                                  else f"(default: {shown})"))


def values(args, params_cls) -> dict:
    """The parameters given on the command line (the others take their defaults)."""
    names = {f.name for f in dataclasses.fields(params_cls)}
    return {name: value for name, value in vars(args).items() if name in names}


def add_out_argument(parser, what: str) -> None:
    parser.add_argument("--out", type=Path, default=None,
                        help=f"run directory to write ({what}); a complete run directory like a "
                             "notebook's, usable as the input of any later command. Default: "
                             "<data root>/<stage>/<run key>")
