"""Stage ``paper_items`` (notebook ``10_paper_items``): every derivlib model decoded on the
authors' 100 released items (static, VR, EE, AG, SR; :func:`derivlib.readers.released.to_sets`),
scored and checked beside the released GPT-4 and FLAN-T5-large outputs and the copy-the-prompt
baseline on the same items.

Each model is asked as it was trained or as the paper asked GPT-4: the fine-tuned T5 gets the
bare prompts, the LoRA adapter the zero-shot template it was trained on, and the in-context
model the stored 5-shot prompts of the GPT-4 file (re-rendered byte for byte from the items'
``exemplars``). The released rows are labelled ``<model> (released)``, so that a derivlib model
fine-tuned from ``flan-t5-large`` keeps a row of its own.

The run directory holds ``sets/*.jsonl`` (the items decoded), ``in_context/`` and ``lora/``
(``predictions.jsonl`` and ``usage.json`` of the in-process decoding, answers in the response
cache :func:`derivlib.stages.prompt_llm.default_cache_dir`), ``predictions.jsonl`` (every row),
``checks.jsonl`` (the symbolic check and paper metrics per record), ``table.csv`` (per model x
set: ROUGE-2, BLEU, GLEU means x100, well-formed outputs, incorrect equations and goal reached,
in %) and the figure ``paper_items_rouge2``. Without ``DERIVLIB_PAPER_RESULTS`` the run says
SKIPPED and completes with an empty table.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pandas as pd

from .. import baseline, check, metrics, scoring
from ..base.files import read_jsonl, read_text, write_jsonl
from ..base.params import ParameterError, from_namespace, validate
from ..base.vocabulary import SETS
from ..models import llm, local, t5
from ..presentation import plots
from ..readers import released
from . import predict_t5, prompt_llm, rundir

STAGE = "paper_items"
FIGURE = "paper_items_rouge2"
#: Shots each released GPT-4 prompt holds (``fewshot.parse_prompt`` of the stored prompts).
STORED_SHOTS = 5
#: Label suffix of the authors' released outputs.
RELEASED = " (released)"
#: Columns of :func:`items_table`.
TABLE_COLUMNS = ("model", "set", "items", "rouge2", "bleu", "gleu", "well_formed", "incorrect_equations",
                 "goal_reached")


@dataclasses.dataclass(frozen=True)
class Params:
    t5_model: str = "train_t5/smoke"  # run directory of 03_train_t5, decoded on the bare prompts; "" to skip
    lora_model: str = "train_lora/smoke"  # run directory of 06_train_lora (its adapter, zero-shot); "" to skip
    in_context_model: str = "embedded"  # decoder LM given the stored 5-shot prompts: embedded, a .gguf file, a model directory or a cached hub id; "" to skip
    n_shots: int = 5  # shots of the stored GPT-4 prompts given to the in-context model (0-5; the paper: 5)
    max_items: int = 0  # first N released items of each set; 0 for all 100
    max_new_tokens: int = 512  # longest output in tokens, every model (the paper's test limit: 512)
    batch_size: int = 8  # prompts decoded together
    num_beams: int = 1  # T5: 1 greedy, as the paper's test decoding; more: beam search
    seed: int = 0  # seed of the symbolic check's numeric points
    time_limit: float = 60.0  # seconds the check may spend on one equation before it is labelled timeout
    workers: int = 2  # torch CPU threads and check worker processes (not part of the run key)
    profile: str = "smoke"  # label: outputs published under data/paper_items/<profile> and figures/<profile>/

    def check(self) -> None:
        if not 0 <= self.n_shots <= STORED_SHOTS:
            raise ParameterError(f"parameter 'n_shots' must be 0 to {STORED_SHOTS} (the stored GPT-4 prompts "
                                 f"hold {STORED_SHOTS} shots), got {self.n_shots}")
        if self.max_items < 0:
            raise ParameterError(f"parameter 'max_items' must be >= 0 (0 = all), got {self.max_items}")
        for name in ("max_new_tokens", "batch_size", "num_beams", "workers"):
            if getattr(self, name) < 1:
                raise ParameterError(f"parameter {name!r} must be >= 1, got {getattr(self, name)}")
        if self.time_limit <= 0:
            raise ParameterError(f"parameter 'time_limit' must be a positive number of seconds, got {self.time_limit}")


@dataclasses.dataclass
class Result:
    available: bool            # False: the released files are absent and nothing was decoded
    predictions: pd.DataFrame  # one row per (model, set, item): PREDICTION_FIELDS
    table: pd.DataFrame        # TABLE_COLUMNS, one row per model x set
    figures: dict[str, Path]   # {"paper_items_rouge2": path}; empty when skipped

    @property
    def note(self) -> str:
        """What the run shows, or why it shows nothing."""
        if not self.available:
            return f"SKIPPED: the released items are not available. {released.DOWNLOAD_HINT}"
        return f"{self.table['model'].nunique()} models on {int(self.table['items'].max())} items per set"

    def wide(self, column: str = "rouge2") -> pd.DataFrame:
        """One column of the table as model x set (models and sets in the table's order)."""
        if column not in TABLE_COLUMNS[2:]:
            raise ValueError(f"column {column!r} is not one of {', '.join(TABLE_COLUMNS[2:])}")
        return (self.table.pivot(index="model", columns="set", values=column)
                .reindex(index=list(dict.fromkeys(self.table["model"])),
                         columns=[s for s in SETS if s in set(self.table["set"])]))


def open_run(namespace, out=None) -> rundir.Run:
    """Validate 10's parameters and open the run directory (upstream: the train_t5 and train_lora
    runs given; inputs: the released files' digest and the in-context model's weights). A model
    that cannot be read is refused here, before any decoding."""
    t5.prefer_passive_threads()  # before anything imports torch
    params = from_namespace(Params, namespace)
    upstream: dict[str, Path] = {}
    if params.t5_model:
        model_run = rundir.resolve_run_dir(params.t5_model, "t5_model")
        t5.check_model_dir(model_run / "model")
        predict_t5.check_model_files(model_run)
        upstream["t5_model"] = model_run
    if params.lora_model:
        lora_run = rundir.resolve_run_dir(params.lora_model, "lora_model")
        if rundir.stage_of(lora_run) != "train_lora" or not (lora_run / "adapter").is_dir():
            raise ParameterError(f"parameter 'lora_model': {lora_run} is not a train_lora run (no adapter/)")
        upstream["lora_model"] = lora_run
    digest, files = released.results_digest()
    inputs = {"paper_results": digest}
    if params.in_context_model:
        source = prompt_llm.local_source(params.in_context_model)
        # the weights, not only their name, determine the answers
        inputs["in_context_model"] = local.identity_digest(source)
        if "lora_model" in upstream and prompt_llm.prediction_label(source, params.n_shots) == \
                prompt_llm.prediction_label(prompt_llm.local_source(str(upstream["lora_model"])), 0):
            raise ParameterError("parameters 'in_context_model' and 'lora_model': the same adapter asked the same "
                                 "way would give two rows of one label; give n_shots > 0 or skip one of them")
    if out is not None:
        for name, path in upstream.items():
            rundir.refuse_out_over_input(out, path, name)
    if not files:
        print(f"SKIPPED: the released items are not available, nothing is decoded. {released.DOWNLOAD_HINT}")
    return rundir.start_run(STAGE, params, upstream=upstream, inputs=inputs, out=out)


def run(run: rundir.Run, *, cache_dir: Path | str | None = None) -> Result:
    """Decode the released items with every model given, add the released outputs and the
    baseline, check and score them all; write the payload. A complete run loads. ``cache_dir``:
    the response cache of the in-process decoding (default :func:`prompt_llm.default_cache_dir`)."""
    if run.complete:
        available = bool(run.inputs.get("paper_results"))
        records = read_jsonl(run.path("predictions.jsonl")) if available else []
        table = pd.read_csv(run.path("table.csv")) if available else empty_table()
        return Result(available, pd.DataFrame(records), table, run.figures())
    files = released.results_files() if run.inputs.get("paper_results") else {}
    if not files:
        run.log(f"SKIPPED: released items not available ({released.DOWNLOAD_HINT})")
        empty_table().to_csv(run.path("table.csv"), index=False)
        run.finish(skipped=1)
        return Result(False, pd.DataFrame(), empty_table(), {})
    try:
        records = _records(run, files, cache_dir)
        rows = _checked_rows(run, records)
    except BaseException:
        # decoded answers are in the response cache; the partial directory stays for a rerun, unlocked
        run.release()
        raise
    write_jsonl(run.path("predictions.jsonl"), records)
    write_jsonl(run.path("checks.jsonl"), rows)
    table = items_table(rows)
    table.to_csv(run.path("table.csv"), index=False)
    run.save_figure(plots.paper_items_rouge2(table), FIGURE)
    run.finish(predictions=len(records), models=int(table["model"].nunique()))
    return Result(True, pd.DataFrame(records), table, run.figures())


def empty_table() -> pd.DataFrame:
    return pd.DataFrame(columns=list(TABLE_COLUMNS))


def chosen_sets(sets: dict[str, list[dict]], max_items: int) -> dict[str, list[dict]]:
    """The first ``max_items`` released items of each set (the same ids in every set)."""
    return {name: items[:max_items] if max_items else items for name, items in sets.items()}


def _records(run: rundir.Run, files: dict[str, Path], cache_dir) -> list[dict]:
    params: Params = run.params
    sets = chosen_sets(released.to_sets(), params.max_items)
    if params.in_context_model and params.n_shots:
        lacking = next((f"{item['id']} ({name})" for name, items in sets.items() for item in items
                        if "exemplars" not in item), None)
        if lacking:
            raise ValueError(f"released item {lacking} carries no stored few-shot prompt (the GPT-4 file "
                             f"gpt-4_results.json holds them); give n_shots=0 or add that file")
    sets_dir = run.path("sets")
    for name, items in sets.items():
        write_jsonl(sets_dir / f"{name}.jsonl", items)
    run.log(f"released items: {', '.join(f'{name} {len(items)}' for name, items in sets.items())}")
    records: list[dict] = []
    t5.set_cpu_threads(params.workers)
    if "t5_model" in run.upstream:
        records += _decode_t5(run, sets)
    cache = llm.ResponseCache(cache_dir or prompt_llm.default_cache_dir())
    if "lora_model" in run.upstream:
        lora_run = Path(run.upstream["lora_model"])
        # decoded with the chat template it was trained with
        trained = json.loads(read_text(lora_run / "params.json", "the train_lora run's params.json"))
        records += _decode_locally(run, sets_dir, "lora", str(lora_run), 0, trained["chat_template"], cache)
    if params.in_context_model:
        records += _decode_locally(run, sets_dir, "in_context", params.in_context_model, params.n_shots,
                                   "auto", cache)
    keep = {(name, item["id"]) for name, items in sets.items() for item in items}
    for model, path in files.items():
        records += [r for r in released.to_predictions(path, model=model + RELEASED) if (r["set"], r["id"]) in keep]
    for name, items in sets.items():
        records += baseline.predictions(items, name)
    return records


def _decode_t5(run: rundir.Run, sets: dict[str, list[dict]]) -> list[dict]:
    params: Params = run.params
    model_run = Path(run.upstream["t5_model"])
    try:
        model, tokenizer = t5.load_model(model_run / "model")
    except Exception as err:  # noqa: BLE001 -- torch, safetensors, tokenizers and transformers each raise their own
        raise ValueError(f"{model_run / 'model'}: cannot load the saved model ({type(err).__name__}: "
                         f"{' '.join(str(err).split())[:300]})") from None
    label = predict_t5.trained_model_label(model_run)
    decoding = t5.DecodeConfig(num_beams=params.num_beams, max_new_tokens=params.max_new_tokens,
                               batch_size=params.batch_size)
    records = []
    for name, items in sets.items():
        started = time.perf_counter()
        records += t5.predictions(model, tokenizer, items, name, label, decoding)
        run.log(f"T5 {label}: {name} {len(items)} items decoded in {time.perf_counter() - started:.1f} s")
    return records


def _decode_locally(run: rundir.Run, sets_dir: Path, name: str, model: str, n_shots: int, chat_template: str,
                    cache: llm.ResponseCache) -> list[dict]:
    """A decoder LM in process (:func:`prompt_llm.prompt_sets`) on the run's sets, into ``<run>/<name>/``."""
    params: Params = run.params
    decode = validate(prompt_llm.Params, {
        "sets": str(sets_dir), "model": model, "backend": "transformers", "n_shots": n_shots,
        "max_tokens": params.max_new_tokens, "batch_size": params.batch_size, "chat_template": chat_template,
        "workers": params.workers, "profile": ""})
    out_dir = run.path(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = prompt_llm.prompt_sets(decode, sets_dir, out_dir, cache, run.log)
    run.log(f"{name}: {len(result.predictions)} answers ({result.usage.get('new_answers', 0)} new) in "
            f"{time.perf_counter() - started:.1f} s")
    return result.predictions


def _checked_rows(run: rundir.Run, records: list[dict]) -> list[dict]:
    """One row per record: its symbolic check (:meth:`check.DerivationCheck.to_dict`), paper
    metrics (fractions) and whether the output is well-formed."""
    params: Params = run.params
    scores = scoring.score_records(records, metrics.PAPER_METRICS)
    checks = check.check_records(records, seed=params.seed, workers=params.workers, time_limit=params.time_limit,
                                 log=run.log)
    rows = []
    for index, (record, result) in enumerate(zip(records, checks)):
        row = result.to_dict()
        row.update({name: float(scores[name].iloc[index]) for name in metrics.PAPER_METRICS})
        # the released GPT-4 outputs start with a space; derivlib's own outputs are stripped already
        row["well_formed"] = t5.is_well_formed(record["prediction"].strip())
        rows.append(row)
    return rows


def items_table(rows: list[dict]) -> pd.DataFrame:
    """Per model (in the rows' order) x set: items, ROUGE-2, BLEU, GLEU means x100, and in %
    the well-formed outputs, the incorrect share of all generated equations, the derivations
    reaching the goal."""
    frame = pd.DataFrame([{
        "model": r["model"], "set": r["set"], "rouge2": 100 * r["rouge"], "bleu": 100 * r["bleu"],
        "gleu": 100 * r["gleu"], "well_formed": 100.0 * r["well_formed"], "equations": len(r["equations"]),
        "incorrect": sum(e["label"] == "incorrect" for e in r["equations"]),
        "goal_reached": 100.0 * r["goal_reached"]} for r in rows])
    groups = frame.groupby(["model", "set"], sort=False)
    table = groups[["rouge2", "bleu", "gleu", "well_formed", "goal_reached"]].mean()
    table["items"] = groups.size()
    sums = groups[["incorrect", "equations"]].sum()
    table["incorrect_equations"] = 100 * sums["incorrect"] / sums["equations"].where(sums["equations"] > 0)
    table = table.reset_index()
    models = list(dict.fromkeys(frame["model"]))
    table["_order"] = [(models.index(m), SETS.index(s) if s in SETS else len(SETS)) for m, s in
                       zip(table["model"], table["set"])]
    table = table.sort_values("_order").drop(columns="_order").reset_index(drop=True)
    return table[list(TABLE_COLUMNS)].round(2)
