"""Training, dev and test sets from derivation records (PAPER.md §1, §3; run by
:mod:`derivlib.stages.testsets`).

1. Derivations are deduplicated by canonical content (their ``srepr_derivation``).
2. Every derivation gets a split hash, sha256 of (seed, content): the order of the hashes is the
   order in which items are drawn, so an item's split depends on its content and the seed, not
   on the file order, and adding derivations never moves the earlier-drawn ones.
3. The static test set takes, in hash order, the first ``n_static`` derivations whose prompt has
   at least one intermediate (SR must have something to remove). Each perturbed set holds the
   perturbations of the first static items it applies to (matched subsets: same ``id``).
4. Training and dev take the remaining derivations in hash order, minus every derivation whose
   prompt or target text occurs in any test set (counted as ``train_leaks_removed``); dev is a
   ``dev_fraction`` of them chosen by a hash of their own. :func:`check_no_leaks` proves the result.

:func:`write_sets` fills a sets directory (the run directory of 02_testsets): ``train.jsonl,
dev.jsonl, static.jsonl, VR.jsonl, EE.jsonl, AG.jsonl, SR.jsonl`` (lines ``{"id", "prompt", "derivation",
"srepr_derivation", "equations", "intermediates", "set", ...}``) and ``test_combined.jsonl``, the
static items in the authors' item layout (``prompt``, ``VR prompt``, ``VR derivation``, ...), so
code written for the released results reads our test items unchanged.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd
from joblib import Parallel, delayed

from . import perturb, prompts
from .base.files import write_jsonl
from .base.params import ParameterError
from .base.seeding import item_rng
from .base.vocabulary import JOIN, PERTURBATIONS, SET_FILES, SETS, field
from .derivation import from_srepr, to_latex

#: The authors' item layout of the static items and their perturbations (see the module docstring).
COMBINED = "test_combined.jsonl"


@dataclasses.dataclass(frozen=True)
class SetsConfig:
    """What :func:`build_sets` needs. The defaults are the paper's (v5) sizes; the testsets stage
    (notebook 02_testsets, ``build-sets``) passes its own parameters."""

    seed: int = 0  # seed of the split hash, the VR renamings and the AG steps
    n_train: int = 15300  # train + dev pairs (at most); dev is dev_fraction of it
    dev_fraction: float = 0.05
    n_static: int = 3100
    n_vr: int = 2900  # each perturbed set holds the perturbations of the first static items
    n_ee: int = 3100
    n_ag: int = 3100
    n_sr: int = 1000
    intermediate_policy: str = "evaluate"  # "evaluate" (authors' rule) or "random"
    verify: bool = True  # keep only perturbed derivations that pass the replay verifier
    workers: int = 1  # processes for the perturbations; the sets do not depend on it

    def check(self) -> None:
        for name in ("n_train", "n_static", "n_vr", "n_ee", "n_ag", "n_sr"):
            if getattr(self, name) < 0:
                raise ParameterError(f"parameter {name!r} must be >= 0, got {getattr(self, name)}")
        for name in ("n_vr", "n_ee", "n_ag", "n_sr"):
            if getattr(self, name) > self.n_static:
                raise ParameterError(
                    f"parameter {name!r} ({getattr(self, name)}) exceeds n_static ({self.n_static}): "
                    "perturbed sets are matched subsets of the static set")
        if not 0.0 <= self.dev_fraction < 1.0:
            raise ParameterError(f"parameter 'dev_fraction' must be in [0, 1), got {self.dev_fraction}")
        if self.intermediate_policy not in prompts.POLICIES:
            raise ParameterError(f"parameter 'intermediate_policy' must be one of "
                                 f"{', '.join(prompts.POLICIES)}, got {self.intermediate_policy!r}")
        if self.workers < 1:
            raise ParameterError(f"parameter 'workers' must be >= 1, got {self.workers}")

    def sizes(self) -> dict[str, int]:
        return {"static": self.n_static, "VR": self.n_vr, "EE": self.n_ee, "AG": self.n_ag, "SR": self.n_sr}

    @classmethod
    def of(cls, params) -> "SetsConfig":
        """The builder's part of any parameters object that has these fields (a stage's Params)."""
        return cls(**{f.name: getattr(params, f.name) for f in dataclasses.fields(cls)})


# ----------------------------------------------------------------------------------- splitting

def content_key(steps: Sequence[Sequence]) -> str:
    """Canonical content of a derivation: sha256 of its normalised ``srepr_derivation``."""
    return hashlib.sha256(json.dumps(steps, sort_keys=True).encode()).hexdigest()


def split_hash(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def deduplicate(records: Iterable[Mapping]) -> tuple[list[dict], int]:
    """First occurrence of each content; returns (unique records with ``content_key``, duplicates)."""
    seen: set[str] = set()
    unique, duplicates = [], 0
    for record in records:
        key = content_key(record["srepr_derivation"])
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        unique.append({**record, "content_key": key})
    return unique, duplicates


def with_prompt(record: Mapping, policy: str, seed: int, test: bool) -> dict:
    """An item ``{"id", "prompt", "derivation", "srepr_derivation", "equations", "intermediates"}``."""
    steps = record["srepr_derivation"]
    equations = list(record.get("equations") or [to_latex(from_srepr(s)) for _, s in steps])
    rng = item_rng(seed, 0, f"prompt:{record['content_key']}")
    counts = prompts.TEST_COUNTS if test else prompts.TRAIN_COUNTS
    intermediates = prompts.choose_intermediates(steps, policy, rng, counts)
    return {"id": str(record["id"]), "prompt": prompts.build_prompt(equations, steps, intermediates),
            "derivation": JOIN.join(equations), "srepr_derivation": steps, "equations": equations,
            "intermediates": intermediates}


# ----------------------------------------------------------------------------------- building

@dataclasses.dataclass
class Sets:
    items: dict[str, list[dict]]  # file stem (train, dev, static, VR, ...) -> items
    counts: dict[str, Any]


def _perturb_chunk(records: Sequence[Mapping], kind: str, seed: int, verify: bool) -> list:
    options = {} if verify else {"verify": None}
    out = []
    for index, record in enumerate(records):
        try:
            out.append(perturb.perturb_record(record, kind, perturb.item_rng_for(seed, kind, record, index),
                                              **options))
        except perturb.NotApplicable as reason:
            out.append(reason.reason)
    return out


def _perturb_all(static: Sequence[Mapping], kind: str, wanted: int, seed: int, verify: bool,
                 workers: int) -> tuple[list[dict], Counter]:
    """The first ``wanted`` static items' ``kind`` perturbations (in static order)."""
    done: list[dict] = []
    skipped: Counter = Counter()
    position = 0
    while len(done) < wanted and position < len(static):
        # work in rounds a little larger than what is missing, so failures are made up for
        need = wanted - len(done)
        batch = list(static[position:position + need + max(8, need // 10)])
        position += len(batch)
        if workers > 1 and len(batch) > workers:
            size = math.ceil(len(batch) / workers)
            chunks = [batch[i:i + size] for i in range(0, len(batch), size)]
            results = [r for part in Parallel(n_jobs=workers)(
                delayed(_perturb_chunk)(c, kind, seed, verify) for c in chunks) for r in part]
        else:
            results = _perturb_chunk(batch, kind, seed, verify)
        for result in results:
            if isinstance(result, str):
                skipped[result] += 1
            elif len(done) < wanted:
                done.append(result)
    return done, skipped


def build_sets(derivations: Sequence[Mapping], params: SetsConfig,
               log: Callable[[str], None] = print) -> Sets:
    """All sets from derivation records (see the module docstring for the procedure)."""
    params.check()
    unique, duplicates = deduplicate(derivations)
    ordered = sorted(unique, key=lambda r: split_hash(params.seed, r["content_key"]))
    counts: dict[str, Any] = {"derivations": len(derivations), "duplicates_removed": duplicates}

    static, rest, ineligible = [], [], 0
    for record in ordered:
        if len(static) < params.n_static:
            item = with_prompt(record, params.intermediate_policy, params.seed, test=True)
            if item["intermediates"]:
                static.append(item)
                continue
            ineligible += 1
        rest.append(record)
    counts["static_ineligible_no_intermediate"] = ineligible
    log(f"static: {len(static)} of {params.n_static} requested")

    items: dict[str, list[dict]] = {"static": [{**s, "set": "static"} for s in static]}
    for kind in PERTURBATIONS:
        wanted = params.sizes()[kind]
        items[kind], skipped = _perturb_all(static, kind, wanted, params.seed, params.verify, params.workers)
        counts[f"{kind}_skipped"] = dict(sorted(skipped.items()))
        log(f"{kind}: {len(items[kind])} of {wanted} requested; skipped {dict(skipped) or 'none'}")

    test_texts = {text for name in SETS for item in items[name] for text in (item["prompt"], item["derivation"])}
    pool, leaks = [], 0
    for record in rest:
        if len(pool) >= params.n_train:
            break
        item = with_prompt(record, params.intermediate_policy, params.seed, test=False)
        if item["prompt"] in test_texts or item["derivation"] in test_texts:
            leaks += 1
            continue
        pool.append(item)
    counts["train_leaks_removed"] = leaks
    # Dev is drawn from the pool by a hash of its own, not taken from the pool's head: the head
    # holds the derivations passed over while static was filled (those without intermediates),
    # so a head-of-pool dev set would have no intermediates at all.
    n_dev = round(len(pool) * params.dev_fraction)
    dev_ids = {i["id"] for i in sorted(pool, key=lambda i: split_hash(params.seed, f"dev:{i['id']}:{i['derivation']}"))[:n_dev]}
    items["dev"] = [{**i, "set": "dev"} for i in pool if i["id"] in dev_ids]
    items["train"] = [{**i, "set": "train"} for i in pool if i["id"] not in dev_ids]
    counts["sizes"] = {name: len(items[name]) for name in SET_FILES}
    counts["requested"] = {"train+dev": params.n_train, **params.sizes()}
    log(f"train: {len(items['train'])}, dev: {len(items['dev'])} ({leaks} removed as test overlaps)")
    check_no_leaks(items)
    return Sets(items={name: items[name] for name in SET_FILES}, counts=counts)


def check_no_leaks(items: Mapping[str, Sequence[Mapping]]) -> None:
    """Raise if any test prompt or test derivation occurs as a prompt or derivation in train/dev."""
    seen = {text for name in ("train", "dev") for item in items.get(name, ())
            for text in (item["prompt"], item["derivation"])}
    for name in SETS:
        for item in items.get(name, ()):
            for key in ("prompt", "derivation"):
                if item[key] in seen:
                    raise AssertionError(f"test item {item['id']} ({name}): its {key} occurs in train/dev")


def combined_items(items: Mapping[str, Sequence[Mapping]]) -> list[dict]:
    """Static items in the authors' layout, with ``P prompt/derivation/srepr_derivation`` for
    every perturbation P the item has (an item skipped by P has no P fields)."""
    by_set = {name: {i["id"]: i for i in items.get(name, ())} for name in PERTURBATIONS}
    out = []
    for item in items["static"]:
        entry = {"id": item["id"]}
        for name in SETS:
            source = item if name == "static" else by_set[name].get(item["id"])
            if source is None:
                continue
            for kind in ("prompt", "derivation", "srepr_derivation"):
                entry[field(name, kind)] = source[kind]
        out.append(entry)
    return out


def write_sets(directory: Path | str, sets: Sets) -> dict[str, Path]:
    """Write every set file and ``test_combined.jsonl`` into ``directory``; name -> path."""
    directory = Path(directory)
    paths = {}
    for name in SET_FILES:
        paths[name] = directory / f"{name}.jsonl"
        write_jsonl(paths[name], sets.items[name])
    paths["combined"] = directory / COMBINED
    write_jsonl(paths["combined"], combined_items(sets.items))
    return paths


# ----------------------------------------------------------------------------------- statistics

def item_table(items: Mapping[str, Sequence[Mapping]]):
    """One row per item: set, id, equations, intermediates, prompt and target length (characters)."""
    rows = [{"set": name, "id": item["id"], "equations": len(item["srepr_derivation"]),
             "intermediates": len(prompts.parse_prompt(item["prompt"]).intermediates),
             "prompt_chars": len(item["prompt"]), "target_chars": len(item["derivation"])}
            for name in SET_FILES for item in items.get(name, ())]
    return pd.DataFrame(rows, columns=["set", "id", "equations", "intermediates", "prompt_chars", "target_chars"])


def statistics(items: Mapping[str, Sequence[Mapping]]):
    """Per set: size, equations (mean, min, max), share of prompts with 0/1/2/3+ intermediates,
    mean prompt and target length."""
    table = item_table(items)
    rows = []
    for name in SET_FILES:
        part = table[table["set"] == name]
        row = {"set": name, "items": len(part)}
        if len(part):
            row.update({"equations (mean)": part["equations"].mean(), "equations (min)": part["equations"].min(),
                        "equations (max)": part["equations"].max()})
            for k, label in ((0, "0"), (1, "1"), (2, "2")):
                row[f"{label} intermediates (%)"] = 100 * (part["intermediates"] == k).mean()
            row["3+ intermediates (%)"] = 100 * (part["intermediates"] >= 3).mean()
            row["prompt chars (mean)"] = part["prompt_chars"].mean()
            row["target chars (mean)"] = part["target_chars"].mean()
        rows.append(row)
    return pd.DataFrame(rows).set_index("set").round(2)


def examples(items: Mapping[str, Sequence[Mapping]], index: int = 0) -> dict[str, dict]:
    """The ``index``-th static item that every perturbation kept, and its perturbed versions."""
    ids = [i["id"] for i in items["static"]]
    common = [i for i in ids if all(i in {x["id"] for x in items.get(k, ())} for k in PERTURBATIONS)]
    if not common:
        common = ids
    if not common:
        return {}
    chosen = common[min(index, len(common) - 1)]
    return {name: next(x for x in items.get(name, ()) if x["id"] == chosen)
            for name in SETS if any(x["id"] == chosen for x in items.get(name, ()))}


def counts_table(counts: Mapping[str, Any]):
    """Requested and built size of every set, and why perturbed items were skipped."""
    sizes, requested = counts.get("sizes", {}), counts.get("requested", {})
    rows = []
    for name in SET_FILES:
        wanted = requested.get("train+dev") if name in ("train", "dev") else requested.get(name)
        skipped = counts.get(f"{name}_skipped") or {}
        rows.append({"set": name, "requested": wanted if name != "dev" else None, "built": sizes.get(name),
                     "skipped": ", ".join(f"{n} {r}" for r, n in skipped.items()) or ""})
    table = pd.DataFrame(rows).set_index("set").astype({"requested": "Int64", "built": "Int64"})
    table.attrs["notes"] = {k: counts.get(k) for k in ("derivations", "duplicates_removed",
                                                        "static_ineligible_no_intermediate", "train_leaks_removed")}
    return table
