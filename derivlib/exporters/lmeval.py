"""An lm-evaluation-harness task directory of a sets run (``python -m derivlib export lm-eval``).

For every test set that holds items, a zero-shot task (``derivlib_static``, ``derivlib_vr``,
``derivlib_ee``, ``derivlib_ag``, ``derivlib_sr``) and an n-shot one (``derivlib_static_5shot``...),
grouped as ``derivlib`` and ``derivlib_5shot``. The directory holds

``data/<set>.jsonl``
    one row per test item: ``id``, ``set``, ``prompt`` (the task prompt), ``derivation`` (the
    reference), ``srepr_derivation`` (the reference's steps, as JSON text) and the two prompts
    the model is given, ``zero_shot`` and ``few_shot``, rendered by :mod:`derivlib.fewshot`. The
    few-shot exemplars are derivlib's own (:func:`derivlib.fewshot.select_exemplars`, drawn from
    the run's ``train.jsonl`` with the seed of notebook 05), so the 5-shot prompt of an item is
    byte for byte the one ``prompt`` sends; the harness samples nothing (``num_fewshot: 0``).
``_derivlib_template_yaml``
    what every task shares: ``dataset_path: json``, ``generate_until`` with stop strings for
    chat models (:data:`STOP`), greedy decoding, ``process_results`` and the metrics with
    their aggregations (:mod:`derivlib.exporters.harness_hooks`), ``metadata.version`` =
    derivlib's version.
``derivlib_<set>[_<n>shot].yaml``, ``derivlib.yaml``, ``derivlib_<n>shot.yaml``
    the tasks (data files by absolute path) and the groups.
``utils.py``
    re-exports the hooks: the harness imports it, and it calls derivlib.
``README.md``, ``derivlib_export.json``
    how to run it; what was exported (:mod:`derivlib.exporters.common`).

Groups aggregate ROUGE-2, BLEU, GLEU, the goal share and the share with a wrong step over their
tasks, weighted by items. The incorrect-equation share and the mean first wrong step are per task
only: the harness pools a group by items, not by equations or by derivations with a wrong step.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import yaml

from .. import __version__, fewshot
from ..base.files import atomic_write_text, write_jsonl
from ..base.params import ParameterError
from ..readers.harness import group_name, task_name
from . import harness_hooks
from .common import ExportResult, SetsRun, perturbations_defined, write_export

KIND = "lm-eval"
#: Stop strings: a model that starts the next example (a line beginning "Prompt:"; an answer
#: that opens by echoing "Prompt: ..." is not cut) or repeats the template's instruction has
#: finished; chat models' end-of-turn markers where the tokenizer's end-of-text differs
#: (Qwen/ChatML, Llama 3). Not "\n\n": chat models put blank lines inside an answer. Four,
#: because OpenAI-compatible chat endpoints accept at most four.
STOP = ("\nPrompt:", "Now given the following prompt", "<|im_end|>", "<|eot_id|>")
TEMPLATE = "_derivlib_template_yaml"
UTILS = '''"""lm-evaluation-harness hooks of the derivlib tasks (written by `python -m derivlib export lm-eval`).

The metrics are derivlib's own: the paper's ROUGE-2 / BLEU / GLEU and derivlib's symbolic check
(derivlib.exporters.harness_hooks). derivlib must be importable where lm_eval runs.
"""
from derivlib.exporters.harness_hooks import mean_present, pooled_share, process_results  # noqa: F401
'''


class _Function(str):
    """A ``!function module.name`` reference in a harness YAML."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Function, lambda dumper, value: dumper.represent_scalar("!function", str(value)))


def _dump(data: dict) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def data_rows(sets_run: SetsRun, set_name: str, n_shots: int, seed: int) -> list[dict]:
    """The rows of ``data/<set>.jsonl`` (module docstring)."""
    train = sets_run.items["train"]
    rows = []
    for item in sets_run.items[set_name]:
        exemplars = fewshot.select_exemplars(train, n_shots, seed, str(item["id"])) if n_shots else []
        rows.append({"id": str(item["id"]), "set": set_name, "prompt": item["prompt"],
                     "derivation": item["derivation"],
                     "srepr_derivation": json.dumps(item["srepr_derivation"], ensure_ascii=False),
                     "zero_shot": fewshot.render_prompt([], item["prompt"]),
                     "few_shot": fewshot.render_prompt(exemplars, item["prompt"]) if n_shots else ""})
    return rows


def task_names(sets_run: SetsRun, n_shots: int) -> list[str]:
    """The tasks an export of ``sets_run`` defines, groups first."""
    shots = [0] + ([n_shots] if n_shots else [])
    return [group_name(k) for k in shots] + [task_name(s, k) for k in shots for s in sets_run.test_sets]


def template(provenance: dict, max_gen_toks: int) -> dict:
    """The shared part of every task's configuration."""
    metric_list = []
    for name in harness_hooks.METRICS:
        aggregation = ("mean" if name in harness_hooks.MEAN_METRICS
                       else _Function(f"utils.{harness_hooks.AGGREGATIONS[name]}"))
        metric_list.append({"metric": name, "aggregation": aggregation,
                            "higher_is_better": harness_hooks.HIGHER_IS_BETTER[name]})
    return {
        "dataset_path": "json",
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_target": "derivation",
        "process_results": _Function("utils.process_results"),
        "generation_kwargs": {"until": list(STOP), "max_gen_toks": max_gen_toks, "do_sample": False,
                              "temperature": 0.0},
        "num_fewshot": 0,
        "metric_list": metric_list,
        "metadata": {"version": __version__, "derivlib_version": __version__,
                     "sets_run_key": provenance["sets_run_key"], "check_seed": harness_hooks.CHECK_SEED},
    }


def task_config(set_name: str, n_shots: int, data_file: Path) -> dict:
    return {"include": TEMPLATE, "task": task_name(set_name, n_shots),
            "task_alias": f"{set_name} ({n_shots}-shot)",
            "dataset_kwargs": {"data_files": {"test": str(data_file)}},
            "doc_to_text": "few_shot" if n_shots else "zero_shot"}


def group_config(set_names: Sequence[str], n_shots: int) -> dict:
    return {"group": group_name(n_shots), "group_alias": f"derivlib ({n_shots}-shot)",
            "task": [task_name(s, n_shots) for s in set_names],
            "aggregate_metric_list": [{"metric": name, "aggregation": "mean", "weight_by_size": True}
                                      for name in harness_hooks.MEAN_METRICS],
            "metadata": {"version": __version__}}


def _readme(sets_run: SetsRun, final: Path, n_shots: int, seed: int) -> str:
    shots = [0] + ([n_shots] if n_shots else [])
    tasks = "\n".join(f"- `{group_name(k)}`: " + ", ".join(f"`{task_name(s, k)}`" for s in sets_run.test_sets)
                      for k in shots)
    perturbations = "\n".join(f"- **{k}**: {v}" for k, v in perturbations_defined().items())
    return f"""# derivlib tasks for lm-evaluation-harness

Exported by `python -m derivlib export lm-eval` (derivlib {__version__}) from the sets run
`{sets_run.dir.resolve()}` (run key `{sets_run.key}`). The data files are named by absolute path:
keep this directory where it is, or export again.

```bash
lm_eval --model hf --model_args pretrained=MODEL --include_path {final} --tasks {group_name(0)} \\
    --log_samples --output_path results/
lm_eval --model local-chat-completions --model_args model=NAME,base_url=http://127.0.0.1:8000/v1/chat/completions \\
    --apply_chat_template --include_path {final} --tasks {group_name(n_shots) if n_shots else group_name(0)} --log_samples --output_path results/
python -m derivlib score --results results/MODEL/samples_{task_name('static')}_DATE.jsonl
```

Tasks (the {n_shots}-shot exemplars are derivlib's own, drawn with seed {seed} from the run's
training set, as notebook 05 draws them):

{tasks}

Metrics per task: `rouge2`, `bleu`, `gleu` (the paper's, as `python -m derivlib score` computes
them, means of fractions); from `python -m derivlib check`: `incorrect_share` (incorrect equations
over all generated equations), `goal_reached` (share of derivations that reach the reference's
goal), `with_wrong_step` (share of derivations with an incorrect equation) and `first_wrong_step`
(mean 0-based index of the first incorrect equation, over the derivations that have one).
Groups average `rouge2`, `bleu`, `gleu`, `goal_reached` and `with_wrong_step` over their tasks,
weighted by items.

Perturbed sets:

{perturbations}
"""


def export(sets_run: SetsRun, out: Path | str, *, n_shots: int = 5, seed: int = 42,
           max_gen_toks: int = 512) -> ExportResult:
    """Write the task directory of ``sets_run`` into ``out`` (module docstring); ``n_shots`` 0
    writes the zero-shot tasks only."""
    if n_shots < 0 or max_gen_toks < 1:
        raise ParameterError(f"--n-shots must be >= 0 and --max-gen-toks >= 1, got {n_shots} and {max_gen_toks}")
    if n_shots > len(sets_run.items["train"]):
        raise ParameterError(f"--n-shots {n_shots}: the sets run's train.jsonl has only "
                             f"{len(sets_run.items['train'])} items")
    provenance = sets_run.provenance()
    manifest = {"kind": KIND, "format": 1, "derivlib_version": __version__, "sets_run": provenance["sets_run"],
                "sets_run_key": sets_run.key, "n_shots": n_shots, "seed": seed, "max_gen_toks": max_gen_toks,
                "stop": list(STOP), "check_seed": harness_hooks.CHECK_SEED}
    shots = [0] + ([n_shots] if n_shots else [])

    def write(directory: Path, final: Path) -> None:
        for set_name in sets_run.test_sets:
            write_jsonl(directory / "data" / f"{set_name}.jsonl", data_rows(sets_run, set_name, n_shots, seed))
            for k in shots:
                config = task_config(set_name, k, final / "data" / f"{set_name}.jsonl")
                atomic_write_text(directory / f"{task_name(set_name, k)}.yaml", _dump(config))
        for k in shots:
            atomic_write_text(directory / f"{group_name(k)}.yaml", _dump(group_config(sets_run.test_sets, k)))
        atomic_write_text(directory / TEMPLATE, _dump(template(provenance, max_gen_toks)))
        atomic_write_text(directory / "utils.py", UTILS)
        atomic_write_text(directory / "README.md", _readme(sets_run, final, n_shots, seed))

    return write_export(out, manifest, write, source=sets_run.dir)
