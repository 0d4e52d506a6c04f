from __future__ import annotations

import json
from pathlib import Path

from .. import notebooks


def add_arguments(p):
    p.add_argument("name", help="notebook stem, e.g. 01_generate")
    p.add_argument("--profile", default="smoke", help="notebooks/params/<profile>.yaml (default: smoke)")
    p.add_argument("--out", type=Path, help="executed copy (default: build/<profile>/<name>.ipynb)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=JSON",
                   help="override one parameter, value as JSON (e.g. -p n_derivations=50)")


def run(args) -> int:
    overrides = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param {item!r}: expected NAME=VALUE")
        try:
            overrides[name] = json.loads(value)
        except json.JSONDecodeError:
            overrides[name] = value
    out = args.out or Path("build") / args.profile / f"{args.name}.ipynb"
    notebooks.execute(args.name, args.profile, out, overrides=overrides)
    print(f"wrote {out}")
    return 0
