"""``python -m derivlib report --profile P``: the profile's report, ``build/<P>/report/index.html``.

Every executed notebook of ``build/<P>/`` converted to HTML, every figure of the published runs,
and an index page with the main results table. Prints that table and the report's path (the
last step of ``make reproduce``)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd

from ..base.files import check_writable, read_jsonl, refuse_overlap
from ..base.params import ParameterError
from ..presentation import report
from ..stages.rundir import COMPLETE, data_root
from .notebook import notebook_names


def add_arguments(p):
    p.add_argument("--profile", default="smoke", help="profile whose runs and notebooks to report (default: smoke)")
    p.add_argument("--build", type=Path, help="executed notebooks (default: build/<profile>)")
    p.add_argument("--out", type=Path, help="report directory (default: <build>/report)")
    p.add_argument("--markdown", action="store_true",
                   help="only print the stage times and the main results as Markdown tables (the README's), "
                        "writing nothing")
    p.add_argument("--compare", nargs="+", metavar="MODEL", default=[],
                   help="with --markdown: also these models side by side on the items all of them answered")


def _stage_run(notebook: str, profile: str) -> report.StageRun:
    stage = notebook.split("_", 1)[1]
    directory = data_root() / stage / profile
    if not (directory / COMPLETE).exists():
        return report.StageRun(notebook, stage, None)
    meta = json.loads((directory / "meta.json").read_text())
    params = json.loads((directory / "params.json").read_text())
    names = meta.get("figures") or sorted(p.stem for p in (directory / "figures").glob("*.png"))
    figures = {n: directory / "figures" / f"{n}.png" for n in names if (directory / "figures" / f"{n}.png").exists()}
    return report.StageRun(notebook, stage, directory.resolve(), params, meta, figures)


def check_out(out: Path, inputs) -> None:
    """The report replaces ``out`` as a whole: refuse one that is, holds or lies in an input (an
    executed notebook, a run directory), or that holds anything but an earlier report."""
    refuse_overlap(out, inputs)
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not (out / "index.html").is_file()):
        raise ParameterError(f"--out {out} exists and is not a report directory (no index.html): it would be "
                             "replaced; choose a new directory or an earlier report's")
    check_writable(out / "index.html", "--out")


def _csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.exists() else None


def _results(profile: str, scores: pd.DataFrame | None) -> pd.DataFrame:
    root = data_root()
    return report.results_table(_csv(root / "score" / profile / "means.csv"),
                                _csv(root / "error_analysis" / profile / "summary.csv"), scores)


def _scores(profile: str) -> pd.DataFrame | None:
    return _csv(data_root() / "score" / profile / "scores.csv")


def print_markdown(profile: str, stages: list[report.StageRun], compare: list[str]) -> int:
    times = report.stage_times(stages)
    print(f"Stage times ({profile}; started to finished of each published run):\n")
    print(report.markdown(times))
    scores = _scores(profile)
    table = _results(profile, scores)
    print(f"\nMain results ({profile}): ROUGE-2 x100 [95% interval], well-formed outputs, symbolic check:\n")
    print(report.markdown(table) if len(table) else "(no scores yet: make score errors)")
    if compare:
        checks_path = data_root() / "error_analysis" / profile / "checks.jsonl"
        if not checks_path.exists():
            raise ParameterError(f"--compare: {checks_path} does not exist: run make errors first")
        try:
            same = report.same_items_table(read_jsonl(checks_path), scores, compare)
        except ValueError as err:
            raise ParameterError(f"--compare: {checks_path}: {err}") from None
        print(f"\n{', '.join(compare)} on the same items ({profile}):\n")
        print(report.markdown(same))
    return 0


def run(args) -> int:
    build = args.build or Path("build") / args.profile
    out = args.out or build / "report"
    stages = [_stage_run(name, args.profile) for name in notebook_names()]
    if args.compare and not args.markdown:
        raise ParameterError("--compare goes with --markdown")
    if args.markdown:
        return print_markdown(args.profile, stages, args.compare)
    check_out(out, [("--build", build / f"{name}.ipynb") for name in notebook_names()]
              + [("run directory", stage.directory) for stage in stages if stage.directory])
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "figures").mkdir(parents=True)
    notebook_links = {}
    for name in notebook_names():
        executed = build / f"{name}.ipynb"
        if executed.exists():
            try:
                page = report.notebook_html(executed)
            except Exception as err:  # noqa: BLE001 -- nbformat and nbconvert raise their own classes
                raise ValueError(f"{executed}: not a readable executed notebook ({type(err).__name__}: "
                                 f"{' '.join(str(err).split())[:200]})") from None
            (partial / f"{name}.html").write_text(page, encoding="utf-8")
            notebook_links[name] = f"{name}.html"
    figure_links = {}
    for stage in stages:
        for name, path in stage.figures.items():
            shutil.copyfile(path, partial / "figures" / f"{name}.png")
            figure_links[name] = (f"figures/{name}.png", stage.notebook)
    table = _results(args.profile, _scores(args.profile))
    (partial / "index.html").write_text(report.index_html(args.profile, stages, table, figure_links,
                                                         notebook_links), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
    print(f"main results ({args.profile}): ROUGE-2 x100 [95% interval], symbolic check")
    print(table.to_string(index=False) if len(table) else "(no scores yet)")
    print(f"report: {(out / 'index.html').resolve()}")
    return 0
