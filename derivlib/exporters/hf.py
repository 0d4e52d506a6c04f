"""A Hugging Face dataset directory of a sets run (``python -m derivlib export hf``).

One config per test set that holds items: ``static`` (splits ``train``, ``validation`` and
``test``: the run's training pairs, dev pairs and static test set) and ``VR``, ``EE``, ``AG``,
``SR`` (split ``test``), each split one JSON-lines file ``<config>/<split>.jsonl``; and the
dataset card ``README.md``, whose YAML block declares the configs, splits, features, licence and
size category (written with ``datasets``' and ``huggingface_hub``'s own card classes), and whose
text says how the data was made (generator and set parameters, seed, derivlib version, run key)
and what the perturbations are. ``datasets.load_dataset(DIR, "static")`` loads it.

Rows are the run's items, field for field, except that the fields whose values mix types
(``srepr_derivation``: ``[annotation, srepr]`` pairs whose annotations are text or lists; VR's
``renaming``) are JSON text, so that every Arrow and ``datasets`` version reads them:
``json.loads(row["srepr_derivation"])`` gives the run's value back.

Uploading is one command, never run here: ``hf upload USER/NAME DIR --repo-type dataset``
(``huggingface_hub``'s CLI; it keeps the card and files as they are).
"""
from __future__ import annotations

import json
from pathlib import Path

import datasets
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from .. import __version__
from ..base.files import atomic_write_text, write_jsonl
from ..base.params import ParameterError
from ..base.vocabulary import SETS
from .common import ExportResult, SetsRun, perturbations_defined, write_export

KIND = "hf"
LICENSE = "mit"  # the data are derivlib's output, under derivlib's licence
#: Fields stored as JSON text (module docstring).
JSON_FIELDS = ("srepr_derivation", "renaming")
#: The features of the fields derivlib writes; any other text field is a string, anything else JSON text.
FEATURES = {
    "id": datasets.Value("string"),
    "set": datasets.Value("string"),
    "prompt": datasets.Value("string"),
    "derivation": datasets.Value("string"),
    "equations": datasets.List(datasets.Value("string")),
    "intermediates": datasets.List(datasets.Value("int64")),
    "srepr_derivation": datasets.Value("string"),
    "renaming": datasets.Value("string"),
}
#: Config -> split -> the sets run file it is.
SPLITS = {"static": {"train": "train", "validation": "dev", "test": "static"},
          **{name: {"test": name} for name in SETS if name != "static"}}
FIELD_TEXT = {
    "id": "item id, the same in a static item and its perturbed versions",
    "set": "the set the item belongs to",
    "prompt": "`Given <premises>, then derive <intermediates>, then obtain <goal>` (LaTeX)",
    "derivation": "the reference derivation: its LaTeX equations joined by ` and `",
    "equations": "the reference derivation's equations, one LaTeX string each",
    "intermediates": "positions of the prompt's intermediate equations in the derivation",
    "srepr_derivation": "JSON text: the steps `[annotation, SymPy srepr of the equation]`, the authors' schema; "
                        "`json.loads` it (annotations are `\"premise\"` or `[rule, operands...]`)",
    "renaming": "JSON text (VR): the one-to-one renaming of the static item's names",
}


def size_category(rows: int) -> str:
    """The Hub's size category of a dataset of ``rows`` rows."""
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M")):
        if rows < bound:
            return label
    return "1M<n<10M"


def hf_row(item: dict, where: str) -> dict:
    """An item as a dataset row (module docstring)."""
    row = {}
    for key, value in item.items():
        if key in JSON_FIELDS or (key not in FEATURES and not isinstance(value, str)):
            row[key] = json.dumps(value, ensure_ascii=False)
        else:
            row[key] = value
    for key, feature in FEATURES.items():
        if key in row and key not in JSON_FIELDS and not _fits(row[key], feature):
            raise ValueError(f"{where}: field {key!r} is {type(row[key]).__name__} {str(row[key])[:40]!r}, "
                             f"expected {feature}")
    return row


def _fits(value, feature) -> bool:
    if isinstance(feature, datasets.List):
        return isinstance(value, list) and all(_fits(v, feature.feature) for v in value)
    if feature.dtype == "string":
        return isinstance(value, str)
    return isinstance(value, int) and not isinstance(value, bool)


def features_of(rows_by_split: dict[str, list[dict]]) -> datasets.Features:
    """The features of a config: derivlib's fields in :data:`FEATURES` order, then the others."""
    keys: list[str] = []
    for rows in rows_by_split.values():
        for row in rows:
            keys += [k for k in row if k not in keys]
    ordered = [k for k in FEATURES if k in keys] + [k for k in keys if k not in FEATURES]
    return datasets.Features({k: FEATURES.get(k, datasets.Value("string")) for k in ordered})


def configs(sets_run: SetsRun) -> dict[str, dict[str, list[dict]]]:
    """config -> split -> rows, for every test set that holds items."""
    out = {}
    for config in sets_run.test_sets:
        out[config] = {split: [hf_row(item, f"{sets_run.dir / (name + '.jsonl')}: item {i}")
                               for i, item in enumerate(sets_run.items[name], 1)]
                       for split, name in SPLITS[config].items()}
    return out


def card(sets_run: SetsRun, tables: dict[str, dict[str, list[dict]]], repo_id: str = "USER/derivlib-derivations") -> DatasetCard:
    """The dataset card: YAML metadata by ``datasets``' own writers, then the text."""
    total = sum(len(rows) for splits in tables.values() for rows in splits.values())
    data = DatasetCardData(language="en", license=LICENSE, size_categories=size_category(total),
                           task_categories=["text-generation"], pretty_name="derivlib: mathematical derivations",
                           tags=["mathematics", "latex", "derivations", "sympy", "symbolic-reasoning"])
    MetadataConfigs({config: {"data_files": [{"split": split, "path": f"{config}/{split}.jsonl"} for split in splits],
                              **({"default": True} if config == "static" else {})}
                     for config, splits in tables.items()}).to_dataset_card_data(data)
    infos = {}
    for config, splits in tables.items():
        split_dict = datasets.SplitDict()
        for split, rows in splits.items():
            # num_bytes as datasets counts it (the Arrow table's size), as push_to_hub would record it
            table = datasets.Dataset.from_list(rows, features=features_of(splits)).data
            split_dict.add(datasets.SplitInfo(name=split, num_bytes=table.nbytes, num_examples=len(rows)))
        infos[config] = datasets.DatasetInfo(config_name=config, features=features_of(splits), splits=split_dict)
    DatasetInfosDict(infos).to_dataset_card_data(data)
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{_body(sets_run, tables, repo_id)}")


def _json_block(value) -> str:
    return "```json\n" + json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n```"


def _body(sets_run: SetsRun, tables: dict, repo_id: str) -> str:
    provenance = sets_run.provenance()
    generator = provenance["generator"]
    sizes = "\n".join(f"| `{config}` | " + ", ".join(f"{split} {len(rows):,}" for split, rows in splits.items())
                      + f" | {_source_files(config)} |" for config, splits in tables.items())
    present = set(tables)
    perturbations = "\n".join(f"- **{k}** ({'included' if k in present else 'empty in this run, not exported'}): {v}"
                              for k, v in perturbations_defined().items())
    fields = "\n".join(f"- `{name}`: {text}" for name, text in FIELD_TEXT.items())
    if generator.get("parameters"):
        made = (f"Derivations: the generate run of key `{generator['run_key']}`, "
                f"with these generator parameters:\n\n{_json_block(generator['parameters'])}")
    elif generator.get("file"):
        made = (f"Derivations: read from the file `{generator['file']}` (sha256, first 16 hex digits: "
                f"`{generator['sha256_16']}`); its generator parameters are not recorded in the run.")
    else:
        made = "Derivations: not recorded in the run's meta.json."
    params = provenance["parameters"]
    first = next(iter(tables))
    return f"""# derivlib: mathematical derivations and their perturbations

Derivations generated with SymPy, every step machine-verifiable, with the prompts and the four
perturbed test sets of **"Generating Mathematical Derivations with Large Language Models"**
(Meadows, Valentino, Freitas, 2023, [arXiv 2307.09998](https://arxiv.org/abs/2307.09998)), made by
derivlib {__version__}. A model is given the prompt (premises, intermediate equations, goal) and
writes the derivation: LaTeX equations joined by ` and `.

## Configs and splits

| config | rows | made from (sets run files) |
|---|---|---|
{sizes}

```python
import datasets
static = datasets.load_dataset("{repo_id}", "{first}")     # or a local export directory
vr = datasets.load_dataset("{repo_id}", "VR", split="test")
```

Perturbed items keep the `id` of their static item, so `static["test"]` and a perturbed test split
join on `id`.

## Fields

{fields}

## Perturbations

{perturbations}

## How the data was made

- derivlib {__version__} (`python -m derivlib export hf`); the sets run was made by derivlib
  {provenance['sets_derivlib_version']} with SymPy {provenance['sympy_version']} (git commit
  `{provenance['git_commit']}`), finished {provenance['finished']}.
- Sets run key `{sets_run.key}`: a hash of every parameter below, the upstream run's key and
  derivlib's code, so the same key means the same files.
- Split seed {params.get('seed')}; train and test are split by a hash of each derivation's
  content, deduplicated first, and no test prompt or derivation occurs in train or validation.

Set parameters (`params.json` of the sets run):

{_json_block(params)}

{made}

## Scoring

`python -m derivlib score` computes the paper's ROUGE-2, BLEU and GLEU exactly as the released
results were computed; `python -m derivlib check` labels every generated equation symbolically
(`srepr_derivation` holds the exact reference). `python -m derivlib export lm-eval` makes the same
sets into lm-evaluation-harness tasks.

## Uploading

```bash
hf upload {repo_id} . --repo-type dataset   # inside this directory; uploads the card and the files as they are
```

## Licence and citation

MIT, as derivlib. The task and perturbations are the paper's:

```bibtex
@article{{meadows2023generating,
  title={{Generating Mathematical Derivations with Large Language Models}},
  author={{Meadows, Jordan and Valentino, Marco and Freitas, Andr{{\\'e}}}},
  journal={{arXiv preprint arXiv:2307.09998}},
  year={{2023}}
}}
```
"""


def _source_files(config: str) -> str:
    return ", ".join(f"`{name}.jsonl`" for name in SPLITS[config].values())


def export(sets_run: SetsRun, out: Path | str, *, repo_id: str = "USER/derivlib-derivations") -> ExportResult:
    """Write the dataset directory of ``sets_run`` into ``out`` (module docstring)."""
    if "/" not in repo_id or repo_id.count("/") != 1:
        raise ParameterError(f"--repo-id {repo_id!r} must be USER/NAME (it is only written into the card)")
    tables = configs(sets_run)
    manifest = {"kind": KIND, "format": 1, "derivlib_version": __version__,
                "sets_run": str(sets_run.dir.resolve()), "sets_run_key": sets_run.key, "repo_id": repo_id}

    def write(directory: Path, final: Path) -> None:
        for config, splits in tables.items():
            for split, rows in splits.items():
                write_jsonl(directory / config / f"{split}.jsonl", rows)
        atomic_write_text(directory / "README.md", str(card(sets_run, tables, repo_id)))

    return write_export(out, manifest, write, source=sets_run.dir)
