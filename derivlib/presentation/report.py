"""The report of one profile: every executed notebook as HTML and an index page to read first.

Plain static HTML that opens from disk with no server: the notebooks are converted by
nbconvert (their figures are embedded), the index shows the main results table, every figure
as a thumbnail linking to the notebook that made it, and each stage's parameters, versions and
times. This module builds the pages; ``derivlib.cli.report`` writes them.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pandas as pd
from nbconvert import HTMLExporter

from ..base.vocabulary import SETS


@dataclass
class StageRun:
    """What the index shows of one stage's published run."""

    notebook: str            # e.g. 03_train_t5
    stage: str               # e.g. train_t5
    directory: Path | None   # the complete run directory, or None when the stage has not run
    params: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)  # name -> path


def results_table(means: pd.DataFrame | None, summary: pd.DataFrame | None,
                  scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per model x set: items, ROUGE-2 (x100) with its 95% interval, share of outputs
    that are well-formed (from ``scores``, the score stage's per-item table, when it has the
    column), share of generated equations labelled incorrect, and share of derivations that
    reach their goal."""
    rows = {}
    if means is not None and len(means):
        rouge = means[means["metric"] == "rouge"]
        for record in rouge.to_dict("records"):
            rows[(record["model"], record["set"])] = {
                "items": str(int(record["n"])) if "n" in record else "-",
                "ROUGE-2": f"{record['mean']:.1f} [{record['ci_low']:.1f}, {record['ci_high']:.1f}]"}
    if scores is not None and "well_formed" in scores:
        for (model, set_name), share in scores.groupby(["model", "set"])["well_formed"].mean().items():
            rows.setdefault((model, set_name), {})["well-formed"] = f"{100 * share:.1f}%"
    if summary is not None and len(summary):
        for record in summary.to_dict("records"):
            row = rows.setdefault((record["model"], record["set"]), {})
            equations = record.get("equations") or 0
            derivations = record.get("derivations") or 0
            row["incorrect equations"] = f"{100 * record['incorrect'] / equations:.1f}%" if equations else "-"
            row["goal reached"] = f"{100 * record['goal_reached'] / derivations:.1f}%" if derivations else "-"
    columns = ["model", "set", "items", "ROUGE-2", "well-formed", "incorrect equations", "goal reached"]
    if not rows:
        return pd.DataFrame(columns=columns)
    order = {name: i for i, name in enumerate(SETS)}
    table = pd.DataFrame([{"model": m, "set": s, **values} for (m, s), values in rows.items()])
    table = table.reindex(columns=[c for c in columns if c in table.columns])
    table["_order"] = table["set"].map(order)
    table = table.sort_values(["model", "_order"]).drop(columns="_order").astype(object).fillna("-")
    return table.reset_index(drop=True)


def stage_times(stages: list[StageRun]) -> pd.DataFrame:
    """Wall time of each stage's published run, from its meta.json (started to finished; a run
    resumed after an interruption counts from its first start)."""
    rows = []
    for stage in stages:
        started, finished = stage.meta.get("started"), stage.meta.get("finished")
        if stage.directory is None or not (started and finished):
            rows.append({"notebook": stage.notebook, "minutes": "not run"})
            continue
        seconds = (pd.Timestamp(finished) - pd.Timestamp(started)).total_seconds()
        rows.append({"notebook": stage.notebook, "minutes": f"{seconds / 60:.1f}"})
    return pd.DataFrame(rows, columns=["notebook", "minutes"])


def same_items_table(checks: list[dict], scores: pd.DataFrame | None, models: list[str]) -> pd.DataFrame:
    """``models`` side by side on the items every one of them answered, per set: ROUGE-2 (x100,
    the paper's, as the check stored it), well-formed outputs (from ``scores`` when it has the
    column), incorrect equations over all generated equations, goal reached. ``checks``: the
    error-analysis records (model, set, id, labels, goal_reached, rouge)."""
    by_model = {m: {} for m in models}
    for record in checks:
        if record["model"] in by_model:
            by_model[record["model"]][(record["set"], record["id"])] = record
    missing = [m for m, found in by_model.items() if not found]
    if missing:
        known = sorted({r["model"] for r in checks})
        raise ValueError(f"no checked outputs of model(s) {', '.join(missing)}; checked models: {', '.join(known)}")
    common = set.intersection(*(set(found) for found in by_model.values()))
    formed = {}
    if scores is not None and "well_formed" in scores:
        # ids as text: a CSV reader makes numeric ids (the authors' files have them) numbers
        formed = {(r["model"], r["set"], str(r["id"])): r["well_formed"] for r in scores.to_dict("records")}
    rows = []
    for set_name in SETS:
        keys = sorted(k for k in common if k[0] == set_name)
        if not keys:
            continue
        for model in models:
            records = [by_model[model][k] for k in keys]
            labels = [label for r in records for label in r["labels"]]
            shares = [formed[(model, k[0], str(k[1]))] for k in keys if (model, k[0], str(k[1])) in formed]
            rows.append({"set": set_name, "model": model, "items": len(keys),
                         "ROUGE-2": f"{100 * sum(r['rouge'] for r in records) / len(records):.1f}",
                         "well-formed": f"{100 * sum(shares) / len(shares):.1f}%" if shares else "-",
                         "incorrect equations": (f"{100 * labels.count('incorrect') / len(labels):.1f}%"
                                                 if labels else "-"),
                         "goal reached": f"{100 * sum(bool(r['goal_reached']) for r in records) / len(records):.1f}%"})
    return pd.DataFrame(rows, columns=["set", "model", "items", "ROUGE-2", "well-formed", "incorrect equations",
                                       "goal reached"])


def markdown(table: pd.DataFrame) -> str:
    """A DataFrame as a GitHub Markdown table. By hand: pandas' ``to_markdown`` needs the
    ``tabulate`` package for these few lines."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(c) for c in table.columns) + " |",
             "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def notebook_html(path: Path) -> str:
    """An executed notebook as one self-contained HTML page (figures embedded)."""
    notebook = nbformat.read(str(path), as_version=4)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook)
    return body


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
.figure { width: 22em; border: 1px solid #ddd; padding: 0.5em; }
.figure img { width: 100%; }
.missing { color: #a00; }
details { margin: 0.3em 0; }
code { font-size: 0.9em; }
"""


def _escape(value) -> str:
    return html.escape(str(value))


def index_html(profile: str, stages: list[StageRun], table: pd.DataFrame, figure_links: dict,
               notebook_links: dict) -> str:
    """The index page. ``figure_links``: figure name -> (relative image path, notebook name);
    ``notebook_links``: notebook name -> relative HTML path of its converted notebook."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>derivlib report: {_escape(profile)}</title>",
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>derivlib report, profile <code>{_escape(profile)}</code></h1>",
             "<p>Reproduces Meadows, Valentino and Freitas, <i>Generating Mathematical Derivations with "
             "Large Language Models</i> (2023). ROUGE-2 is the paper's (x100, 95% bootstrap interval "
             "over items); incorrect equations and goal reached come from derivlib's symbolic check.</p>",
             "<h2>Main results</h2>"]
    parts.append(table.to_html(index=False, escape=True, border=0) if len(table)
                 else "<p class='missing'>No scores yet: run <code>make score errors</code>.</p>")
    parts.append("<h2>Figures</h2><div class='figures'>")
    for name, (image, notebook) in figure_links.items():
        target = notebook_links.get(notebook, image)
        parts.append(f"<div class='figure'><a href='{_escape(target)}'><img src='{_escape(image)}' "
                     f"alt='{_escape(name)}'></a><br><code>{_escape(name)}</code> "
                     f"(<a href='{_escape(target)}'>{_escape(notebook)}</a>)</div>")
    parts.append("</div><h2>Notebooks and runs</h2><table><tr><th>notebook</th><th>run</th>"
                 "<th>started / finished (UTC)</th><th>parameters</th><th>versions and hardware</th></tr>")
    for stage in stages:
        link = notebook_links.get(stage.notebook)
        name = f"<a href='{_escape(link)}'>{_escape(stage.notebook)}</a>" if link else _escape(stage.notebook)
        if stage.directory is None:
            parts.append(f"<tr><td>{name}</td><td class='missing' colspan='4'>not run</td></tr>")
            continue
        params = json.dumps(stage.params, indent=1, sort_keys=True)
        versions = json.dumps({**stage.meta.get("versions", {}), **stage.meta.get("hardware", {})},
                              indent=1, sort_keys=True)
        parts.append(f"<tr><td>{name}</td><td><code>{_escape(stage.meta.get('key', ''))}</code></td>"
                     f"<td>{_escape(stage.meta.get('started', ''))}<br>{_escape(stage.meta.get('finished', ''))}</td>"
                     f"<td><details><summary>{len(stage.params)} parameters</summary><pre>{_escape(params)}</pre>"
                     f"</details></td><td><details><summary>python {_escape(stage.meta.get('versions', {}).get('python', '?'))}"
                     f"</summary><pre>{_escape(versions)}</pre></details></td></tr>")
    # Marks, once the page has loaded, how many of its images decoded: what a browser test reads.
    parts.append("</table><script>window.addEventListener('load', function () {"
                 "var images = Array.prototype.slice.call(document.images);"
                 "document.body.setAttribute('data-images-loaded', images.filter(function (i) {"
                 "return i.complete && i.naturalWidth > 0; }).length + '/' + images.length); });"
                 "</script></body></html>")
    return "\n".join(parts)
