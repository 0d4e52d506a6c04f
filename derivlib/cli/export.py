"""``python -m derivlib export FORMAT``: derivlib's benchmark in the formats other tools read.

- ``export lm-eval --sets RUN_DIR --out DIR``: an lm-evaluation-harness task directory
  (:mod:`derivlib.exporters.lmeval`); then ``lm_eval --include_path DIR --tasks derivlib ...``.
- ``export hf --sets RUN_DIR --out DIR``: a Hugging Face dataset directory with its card
  (:mod:`derivlib.exporters.hf`); ``datasets.load_dataset(DIR, "static")`` loads it.
- ``export steps --results PATH --out FILE``: PRM800K-shaped step labels of every checked
  derivation (:mod:`derivlib.exporters.steps`).

``RUN_DIR`` is a complete sets run (``build-sets --out``, or notebook 02's ``testsets/<profile>``,
relative to the data root). ``--out`` is new or empty; one that holds the same export is left as
it is, one that holds anything else is refused and nothing is written.
"""
from __future__ import annotations

from pathlib import Path

from ..base.files import check_writable, refuse_overlap
from ..exporters import common, hf, lmeval, steps
from ..stages import prompt_llm, rundir
from .results import add_results_arguments, read_results, refuse_input_path

#: The few-shot draw, its size and the answer length of notebook 05 / ``prompt``.
PROMPTING = prompt_llm.Params()


def add_arguments(p):
    sub = p.add_subparsers(dest="format", required=True, metavar="format")
    lm = sub.add_parser("lm-eval", help="lm-evaluation-harness tasks, one per test set, zero- and n-shot",
                        description=lmeval.__doc__.split("\n\n")[0])
    _sets_and_out(lm, "task directory")
    lm.add_argument("--n-shots", type=int, default=PROMPTING.n_shots,
                    help=f"exemplars of the few-shot tasks, 0 for zero-shot tasks only (default: {PROMPTING.n_shots}, as 05)")
    lm.add_argument("--seed", type=int, default=PROMPTING.seed,
                    help=f"seed of the exemplar draw (default: {PROMPTING.seed}, notebook 05's)")
    lm.add_argument("--max-gen-toks", type=int, default=PROMPTING.max_tokens,
                    help=f"longest answer, in tokens (default: {PROMPTING.max_tokens}, as 05)")
    lm.set_defaults(_export=_lm_eval)
    ds = sub.add_parser("hf", help="a Hugging Face dataset directory: one config per set, a dataset card",
                        description=hf.__doc__.split("\n\n")[0])
    _sets_and_out(ds, "dataset directory")
    ds.add_argument("--repo-id", default="USER/derivlib-derivations",
                    help="USER/NAME the card's examples and upload command name (nothing is uploaded)")
    ds.set_defaults(_export=_hf)
    st = sub.add_parser("steps", help="PRM800K-shaped step labels (+1/0/-1) of every checked derivation",
                        description=steps.__doc__.split("\n\n")[0])
    add_results_arguments(st)
    st.add_argument("--out", type=Path, required=True, help="JSONL file to write (never one of the inputs)")
    st.add_argument("--seed", type=int, default=0, help="seed of the check's numeric points (default 0, as check)")
    st.add_argument("--workers", type=int, default=1,
                    help="check worker processes (default 1, as check: each equation under check's time limit); "
                         "0 checks in this process, structural budgets only")
    st.set_defaults(_export=_steps)


def _sets_and_out(parser, what: str) -> None:
    parser.add_argument("--sets", required=True,
                        help="a complete sets run directory (build-sets --out, or testsets/<profile> under the data root)")
    parser.add_argument("--out", type=Path, required=True, help=f"the {what} to write: new or empty")


def _sets_run(value: str, out: Path) -> common.SetsRun:
    path = Path(value)
    if not path.is_absolute() and not path.exists():
        path = rundir.data_root() / path
    refuse_overlap(out, {"--sets": path})  # the complete sets run stays as it is
    return common.read_sets_run(path)


def _report(result: common.ExportResult, what: str) -> None:
    if result.written:
        print(f"wrote {what} ({len(result.files)} files) to {result.dir}")
    else:
        print(f"{result.dir} already holds this export: nothing written")


def _lm_eval(args) -> int:
    sets_run = _sets_run(args.sets, args.out)
    result = lmeval.export(sets_run, args.out, n_shots=args.n_shots, seed=args.seed, max_gen_toks=args.max_gen_toks)
    tasks = ", ".join(lmeval.task_names(sets_run, args.n_shots))
    _report(result, f"lm-eval tasks {tasks}")
    print(f"run: lm_eval --model hf --model_args pretrained=MODEL --include_path {result.dir.resolve()} "
          "--tasks derivlib --log_samples --output_path results/")
    return 0


def _hf(args) -> int:
    result = hf.export(_sets_run(args.sets, args.out), args.out, repo_id=args.repo_id)
    _report(result, "a Hugging Face dataset")
    print(f"load: datasets.load_dataset({str(result.dir.resolve())!r}, 'static')")
    return 0


def _steps(args) -> int:
    refuse_input_path(args.out, args, "--out")
    check_writable(args.out, "--out")
    records = read_results(args)
    count = steps.export(records, args.out, seed=args.seed, workers=args.workers)
    print(f"wrote {count} step-labelled derivations to {args.out}")
    return 0


def run(args) -> int:
    return args._export(args)
