"""The ``--results`` inputs that ``score`` and ``check`` share: prediction records read from
authors' results files, derivlib predictions files or run directories alike."""
from __future__ import annotations

from pathlib import Path

from ..base.files import refuse_overlap
from ..base.params import ParameterError
from ..readers import runs
from ..stages.rundir import COMPLETE


def add_results_arguments(p) -> None:
    """``--results`` (repeatable) and ``--model-name``."""
    p.add_argument("--results", type=Path, required=True, action="append",
                   help="an authors' results JSON, a derivlib predictions.jsonl, or a run directory "
                        "holding one (repeatable)")
    p.add_argument("--model-name", action="append", metavar="NAME",
                   help="label the model of the results NAME instead of the name the file holds; "
                        "given once, it labels every --results; given once per --results, the i-th "
                        "name labels the i-th results")


def model_names(args) -> list[str | None]:
    """The model label of each ``--results`` (None: the name the file holds)."""
    names = args.model_name or []
    if len(names) not in (0, 1, len(args.results)):
        raise ParameterError(f"--model-name given {len(names)} times for {len(args.results)} --results: "
                             "give it once (for every results) or once per --results")
    if not names:
        return [None] * len(args.results)
    return names * len(args.results) if len(names) == 1 else list(names)


def read_results(args) -> list[dict]:
    """Every prediction record of ``args.results``, the model relabelled by ``--model-name``."""
    records = []
    for path, name in zip(args.results, model_names(args)):
        records += runs.load_predictions(path, name)
    return records


def refuse_input_path(path: Path, args, option: str) -> None:
    """Refuse to write ``path`` when it is, or holds, one of the ``--results`` inputs, or lies
    inside an input directory or the complete run directory of an input file (a complete run
    directory is never written again)."""
    inputs = []
    for given in args.results:
        inputs.append(("--results", given))
        if given.is_file() and (given.parent / COMPLETE).exists():
            inputs.append(("the run directory of --results", given.parent))
    refuse_overlap(path, inputs, option)
