"""``python -m derivlib train``: fine-tune a T5-family model on a sets directory (stage train_t5).

Options mirror the parameters of notebook 03_train_t5 (``--batch-size`` for ``batch_size``...).
"""
from __future__ import annotations

from .. import config
from ..models import t5
import dataclasses
import typing


def add_dataclass_arguments(p, params_cls, required: tuple[str, ...] = ()) -> None:
    """One ``--option`` per field of a parameters dataclass, typed and defaulted as declared
    (argparse cannot read dataclasses itself)."""
    hints = typing.get_type_hints(params_cls)
    for field in dataclasses.fields(params_cls):
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        if kind is bool:
            p.add_argument(flag, dest=field.name, type=lambda v: v.lower() in ("1", "true", "yes"),
                           default=field.default, metavar="BOOL", help=f"default: {field.default}")
        elif field.name in required:
            p.add_argument(flag, dest=field.name, type=kind, required=True)
        else:
            p.add_argument(flag, dest=field.name, type=kind, default=field.default,
                           help=f"default: {field.default}")


def values_from_args(args, params_cls) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(params_cls)}


def add_arguments(p):
    add_dataclass_arguments(p, t5.TrainParams, required=("sets",))


def run(args) -> int:
    params = config.validate(t5.TrainParams, values_from_args(args, t5.TrainParams))
    run_ = t5.start_train_run(params)
    result = t5.train(run_)
    print(f"model: {result.model_dir}  (best dev ROUGE-2 {100 * (result.summary['best_dev_rouge2'] or 0):.2f})")
    return 0
