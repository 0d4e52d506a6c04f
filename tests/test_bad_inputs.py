"""Bad input across every command, as a careless or hostile user gives it: each case must end with
exit status 2 and one line on stderr naming the file (and the line or item where there is one),
no traceback, nothing already written changed, and no output written where the input was refused.

The cases run in this process through ``derivlib.__main__.main`` (a subprocess per case would cost
seconds each); the few that need a kernel or a real process are in ``tests/test_kill.py`` and
at the end of this file."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from derivlib import __main__ as cli
from derivlib import baseline
from derivlib.base.files import atomic_write_json, write_jsonl
from derivlib.models import t5
from derivlib.readers import runs
from derivlib.stages import rundir

import handmade

t5.prefer_passive_threads()  # before torch loads: spinning OpenMP threads train 6-10x slower here

REPO = Path(__file__).resolve().parent.parent
BUILD_SETS = ["--seed", "3", "--n-train", "30", "--n-static", "6", "--n-vr", "6", "--n-ee", "6", "--n-ag", "4",
              "--n-sr", "6", "--verify", "false"]
TINY_TRAIN = ["--vocab-size", "300", "--d-model", "16", "--d-ff", "32", "--num-layers", "1", "--num-heads", "2",
              "--epochs", "1", "--max-dev-items", "1", "--sub-derivations", "false"]


def complete_run(directory: Path, stage: str) -> Path:
    """Mark ``directory`` a complete run of ``stage`` (as a stage leaves one)."""
    atomic_write_json(directory / "meta.json", {"key": f"test-{stage}", "stage": stage})
    atomic_write_json(directory / "params.json", {})
    (directory / rundir.COMPLETE).write_text("done\n")
    return directory


def digest(root: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Good inputs (a derivations file, a sets run, a predictions run) and bad ones made from them."""
    root = tmp_path_factory.mktemp("bad_inputs")
    good = root / "good"
    good.mkdir()
    derivations = good / "derivations.jsonl"
    write_jsonl(derivations, handmade.records(40) + handmade.records(30, handmade.no_evaluation_chain, prefix="p"))
    sets = good / "sets"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DERIVLIB_DATA", str(root / "data"))
        assert cli.main(["build-sets", "--derivations", str(derivations), "--out", str(sets), *BUILD_SETS]) == 0
    predictions = good / "predictions"
    predictions.mkdir()
    write_jsonl(predictions / "predictions.jsonl", baseline.predictions(runs.load_set(sets, "static"), "static"))
    complete_run(predictions, "predict_t5")
    generate_run = complete_run(good / "generate", "generate")
    shutil.copy(derivations, generate_run / "derivations.jsonl")

    bad = root / "bad"
    bad.mkdir()
    lines = derivations.read_text().splitlines()
    static = runs.load_set(sets, "static")
    prediction = json.loads((predictions / "predictions.jsonl").read_text().splitlines()[0])

    def text(name: str, content: str) -> Path:
        (bad / name).write_text(content)
        return bad / name

    def raw(name: str, content: bytes) -> Path:
        (bad / name).write_bytes(content)
        return bad / name

    def line(record) -> str:
        return json.dumps(record) + "\n"

    f = {
        "empty": text("empty.jsonl", ""),
        "blank": text("blank.jsonl", "\n  \n"),
        "lists": text("lists.jsonl", "[1, 2]\n[3]\n"),
        "scalars": text("scalars.jsonl", '3\n"x"\nnull\n'),
        "nosrepr": text("nosrepr.jsonl", lines[0] + "\n" + line({"id": "a", "derivation": "x = 1"})),
        "srepr_num": text("srepr_num.jsonl", line({"id": "a", "srepr_derivation": 5})),
        "srepr_str": text("srepr_str.jsonl", line({"id": "a", "srepr_derivation": "Equality(x, 1)"})),
        "srepr_short": text("srepr_short.jsonl", lines[0] + "\n" + line({"id": "a", "srepr_derivation": [["premise"]]})),
        "srepr_code": text("srepr_code.jsonl", lines[0] + "\n" + line(
            {"id": "a", "srepr_derivation": [["premise", "__import__('os').system('touch PWNED')"]]})),
        "srepr_numstep": text("srepr_numstep.jsonl", line({"id": "a", "srepr_derivation": [["premise", 5]]})),
        "srepr_empty": text("srepr_empty.jsonl", line({"id": "a", "srepr_derivation": []})),
        "nonutf8": raw("nonutf8.jsonl", lines[0].encode() + b'\n{"id": "\xff\xfe"}\n'),
        "truncated": text("truncated.jsonl", "\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2]),
        "binary": raw("binary.jsonl", bytes(range(256)) * 4),
        "json_trunc": text("trunc_results.json", '[{"srepr_derivation": ['),
        "json_scalars": text("scalars_results.json", "[1, 2, 3]"),
        "json_empty": text("empty_results.json", "[]"),
        "one": text("one.jsonl", lines[0] + "\n"),
        "item_textnum": text("textnum.jsonl", line({**static[0], "derivation": 5})),
        "item_promptnum": text("promptnum.jsonl", line({**static[0], "prompt": 7})),
        "pred_nofield": text("pred_nofield.jsonl", line({k: v for k, v in prediction.items() if k != "prediction"})),
        "pred_num": text("pred_num.jsonl", line({**prediction, "prediction": 5})),
        "pred_model_num": text("pred_model_num.jsonl", line({**prediction, "model": 5})),
        "pred_id_list": text("pred_id_list.jsonl", line({**prediction, "id": [1]})),
        "pred_nonutf8": raw("pred_nonutf8.jsonl", line(prediction).encode() + b"\xff\xfe\n"),
        "pred_trunc": text("pred_trunc.jsonl", line(prediction) + line(prediction)[:40]),
    }
    (bad / "emptydir").mkdir()
    f["emptydir"] = bad / "emptydir"
    (bad / "dir.jsonl").mkdir()
    f["dir_jsonl"] = bad / "dir.jsonl"
    (bad / "dir_run" / "derivations.jsonl").mkdir(parents=True)
    f["dir_run"] = bad / "dir_run"

    def sets_variant(name: str, set_file: str, content: bytes | None) -> Path:
        directory = bad / name
        shutil.copytree(sets, directory)
        if content is None:
            (directory / set_file).unlink()
            (directory / set_file).mkdir()
        else:
            (directory / set_file).write_bytes(content)
        return directory

    train_text = (sets / "train.jsonl").read_bytes()
    f["sets_train_lists"] = sets_variant("sets_train_lists", "train.jsonl", b"[1]\n")
    f["sets_train_nonutf8"] = sets_variant("sets_train_nonutf8", "train.jsonl", train_text[:200] + b"\xff\n")
    f["sets_train_trunc"] = sets_variant("sets_train_trunc", "train.jsonl", train_text[:300])
    f["sets_train_empty"] = sets_variant("sets_train_empty", "train.jsonl", b"")
    f["sets_train_dir"] = sets_variant("sets_train_dir", "train.jsonl", None)
    f["sets_static_num"] = sets_variant("sets_static_num", "static.jsonl", line({**static[0], "prompt": 5}).encode())
    f["sets_static_nonutf8"] = sets_variant("sets_static_nonutf8", "static.jsonl", b"\xff\xfe\n")
    broken_pred = bad / "predictions_nonutf8"
    shutil.copytree(predictions, broken_pred)
    (broken_pred / "predictions.jsonl").write_bytes(b"\xff\n")
    f["pred_run_nonutf8"] = broken_pred
    build = bad / "build"
    build.mkdir()
    (build / "01_generate.ipynb").write_text("{}")
    f["build"] = build
    (bad / "notes").mkdir()
    (bad / "notes" / "thesis.tex").write_text("precious")
    f["notes"] = bad / "notes"
    return {"root": root, "good": good, "derivations": derivations, "sets": sets, "predictions": predictions,
            "generate": generate_run, "bad": bad, "out": root / "outs", **f}


@pytest.fixture(scope="module")
def unwritable(tmp_path_factory):
    """A directory this process cannot write in, even as root (who passes every permission bit)."""
    if os.geteuid() == 0:
        candidate = Path("/sys/derivlib-unwritable")  # sysfs refuses new entries, even root's
        try:
            candidate.mkdir()
        except OSError:
            yield candidate
            return
        candidate.rmdir()
        pytest.skip("no directory here refuses root's writes")
    directory = tmp_path_factory.mktemp("read_only")
    directory.chmod(0o555)
    yield directory
    directory.chmod(0o755)


def _o(name):
    return lambda w: str(w["out"] / name)


# (id, argv from the fixture's paths, text the one line must hold (from the fixture's paths), options)
# options: "unwritable": DERIVLIB_DATA or a path under the unwritable directory ({ro} in argv);
# "kept": a path that must not exist afterwards.
CASES = [
    # generate: parameters refused before any work
    ("generate-no-derivations", lambda w: ["generate", "--n", "0", "--out", _o("g1")(w)],
     lambda w: ["'n_derivations'", "positive"]),
    ("generate-no-workers", lambda w: ["generate", "--n", "3", "--workers", "0", "--out", _o("g2")(w)],
     lambda w: ["'workers'"]),
    ("generate-min-above-max", lambda w: ["generate", "--n", "3", "--min-length", "8", "--max-length", "4",
                                          "--out", _o("g3")(w)], lambda w: ["'min_length'", "8, 4"]),
    # the range the Normal almost never draws (the one it draws but the generator never reaches: test_kill)
    ("generate-length-never-drawn", lambda w: ["generate", "--n", "3", "--min-length", "50", "--max-length", "60",
                                               "--length-mean", "10", "--out", _o("g4")(w)],
     lambda w: ["'length_mean'", "almost never"]),
    ("generate-unknown-operator", lambda w: ["generate", "--n", "3", "--operator-weights", '{"nope": 1}'],
     lambda w: ["'operator_weights'", "nope"]),
    ("generate-out-is-a-file", lambda w: ["generate", "--n", "3", "--out", w["empty"]], lambda w: [w["empty"]]),
    ("generate-out-not-a-run", lambda w: ["generate", "--n", "3", "--out", w["notes"]],
     lambda w: [w["notes"], "not a derivlib run"]),
    ("generate-out-unwritable", lambda w: ["generate", "--n", "3", "--out", "{ro}/g"],
     lambda w: ["{ro}", "cannot write"], {"unwritable": True}),
    ("generate-data-root-unwritable", lambda w: ["generate", "--n", "3"], lambda w: ["{ro}", "data root"],
     {"unwritable": True}),
    # verify: nothing to verify is not a pass
    ("verify-empty", lambda w: ["verify", w["empty"]], lambda w: [w["empty"], "no derivations"]),
    ("verify-blank", lambda w: ["verify", w["blank"]], lambda w: [w["blank"], "no derivations"]),
    ("verify-lists", lambda w: ["verify", w["lists"]], lambda w: [w["lists"], "line 1", "list"]),
    ("verify-scalars", lambda w: ["verify", w["scalars"]], lambda w: [w["scalars"], "line 1", "number"]),
    ("verify-no-srepr", lambda w: ["verify", w["nosrepr"]], lambda w: [w["nosrepr"], "line 2", "srepr_derivation"]),
    ("verify-srepr-number", lambda w: ["verify", w["srepr_num"]], lambda w: [w["srepr_num"], "line 1", "int"]),
    ("verify-srepr-text", lambda w: ["verify", w["srepr_str"]], lambda w: [w["srepr_str"], "line 1", "str"]),
    ("verify-short-step", lambda w: ["verify", w["srepr_short"]], lambda w: [w["srepr_short"], "line 2", "step 1"]),
    ("verify-number-step", lambda w: ["verify", w["srepr_numstep"]],
     lambda w: [w["srepr_numstep"], "line 1", "where the srepr text is expected"]),
    ("verify-empty-steps", lambda w: ["verify", w["srepr_empty"]], lambda w: [w["srepr_empty"], "line 1", "empty"]),
    ("verify-non-utf8", lambda w: ["verify", w["nonutf8"]], lambda w: [w["nonutf8"], "line 2", "UTF-8"]),
    ("verify-truncated", lambda w: ["verify", w["truncated"]], lambda w: [w["truncated"], "line 4", "truncated"]),
    ("verify-binary", lambda w: ["verify", w["binary"]], lambda w: [w["binary"], "line 1"]),
    ("verify-json-truncated", lambda w: ["verify", w["json_trunc"]], lambda w: [w["json_trunc"], "not valid JSON"]),
    ("verify-json-scalars", lambda w: ["verify", w["json_scalars"]], lambda w: [w["json_scalars"], "item 0"]),
    ("verify-json-empty", lambda w: ["verify", w["json_empty"]], lambda w: [w["json_empty"], "non-empty"]),
    ("verify-missing", lambda w: ["verify", w["bad"] / "nope.jsonl"], lambda w: [w["bad"] / "nope.jsonl"]),
    ("verify-empty-dir", lambda w: ["verify", w["emptydir"]], lambda w: [w["emptydir"]]),
    ("verify-directory-as-file", lambda w: ["verify", w["dir_run"]], lambda w: [w["dir_run"], "is a directory"]),
    # build-sets
    ("build-sets-empty", lambda w: ["build-sets", "--derivations", w["empty"], "--out", _o("bs1")(w)],
     lambda w: [w["empty"], "no derivations"]),
    ("build-sets-lists", lambda w: ["build-sets", "--derivations", w["lists"], "--out", _o("bs2")(w)],
     lambda w: [w["lists"], "line 1", "list"]),
    ("build-sets-short-step", lambda w: ["build-sets", "--derivations", w["srepr_short"], "--out", _o("bs3")(w)],
     lambda w: [w["srepr_short"], "line 2", "step 1"]),
    ("build-sets-code-as-srepr", lambda w: ["build-sets", "--derivations", w["srepr_code"], "--out", _o("bs8")(w)],
     lambda w: [w["srepr_code"], "line 2", "Attribute is not allowed"]),
    ("build-sets-non-utf8", lambda w: ["build-sets", "--derivations", w["nonutf8"], "--out", _o("bs4")(w)],
     lambda w: [w["nonutf8"], "line 2", "UTF-8"]),
    ("build-sets-truncated", lambda w: ["build-sets", "--derivations", w["truncated"], "--out", _o("bs5")(w)],
     lambda w: [w["truncated"], "line 4"]),
    ("build-sets-one-derivation", lambda w: ["build-sets", "--derivations", w["one"], "--out", _o("bs6")(w)],
     lambda w: [w["one"], "no train"]),
    ("build-sets-not-a-run", lambda w: ["build-sets", "--derivations", w["emptydir"], "--out", _o("bs7")(w)],
     lambda w: [w["emptydir"], "not a complete run directory"]),
    ("build-sets-out-is-input", lambda w: ["build-sets", "--derivations", w["derivations"], "--out", w["derivations"]],
     lambda w: [w["derivations"], "is the input"]),
    ("build-sets-out-holds-input", lambda w: ["build-sets", "--derivations", w["derivations"], "--out", w["good"]],
     lambda w: [w["good"], "holds the input"]),
    ("build-sets-out-is-upstream", lambda w: ["build-sets", "--derivations", w["generate"], "--out", w["generate"]],
     lambda w: [w["generate"], "input"]),
    ("build-sets-out-inside-upstream",
     lambda w: ["build-sets", "--derivations", w["generate"], "--out", w["generate"] / "sets"],
     lambda w: [w["generate"], "lies inside the input"], {"kept": lambda w: w["generate"] / "sets"}),
    ("build-sets-out-inside-run-of-input-file",
     lambda w: ["build-sets", "--derivations", w["generate"] / "derivations.jsonl", "--out", w["generate"] / "s"],
     lambda w: [w["generate"], "lies inside"], {"kept": lambda w: w["generate"] / "s"}),
    ("build-sets-out-is-a-file", lambda w: ["build-sets", "--derivations", w["derivations"], "--out", w["empty"]],
     lambda w: [w["empty"], "is a file"]),
    ("build-sets-out-not-a-run", lambda w: ["build-sets", "--derivations", w["derivations"], "--out", w["notes"]],
     lambda w: [w["notes"], "not a derivlib run"]),
    ("build-sets-out-unwritable", lambda w: ["build-sets", "--derivations", w["derivations"], "--out", "{ro}/x"],
     lambda w: ["{ro}", "cannot write"], {"unwritable": True}),
    ("build-sets-data-root-unwritable", lambda w: ["build-sets", "--derivations", w["derivations"]],
     lambda w: ["{ro}", "data root"], {"unwritable": True}),
    # perturb
    ("perturb-empty", lambda w: ["perturb", "--kind", "EE", "--in", w["empty"], "--out", _o("p1")(w)],
     lambda w: [w["empty"], "no items"]),
    ("perturb-scalars", lambda w: ["perturb", "--kind", "EE", "--in", w["scalars"], "--out", _o("p2")(w)],
     lambda w: [w["scalars"], "line 1"]),
    ("perturb-derivation-number", lambda w: ["perturb", "--kind", "EE", "--in", w["item_textnum"], "--out", _o("p3")(w)],
     lambda w: [w["item_textnum"], "line 1", "'derivation'", "expected text"]),
    ("perturb-prompt-number", lambda w: ["perturb", "--kind", "EE", "--in", w["item_promptnum"], "--out", _o("p4")(w)],
     lambda w: [w["item_promptnum"], "line 1", "'prompt'"]),
    ("perturb-non-utf8", lambda w: ["perturb", "--kind", "EE", "--in", w["nonutf8"], "--out", _o("p5")(w)],
     lambda w: [w["nonutf8"], "line 2", "UTF-8"]),
    ("perturb-directory", lambda w: ["perturb", "--kind", "EE", "--in", w["sets"], "--out", _o("p6")(w)],
     lambda w: [w["sets"], "is a directory"]),
    ("perturb-out-is-input",
     lambda w: ["perturb", "--kind", "EE", "--in", w["sets"] / "static.jsonl", "--out", w["sets"] / "static.jsonl"],
     lambda w: [w["sets"] / "static.jsonl", "is the input"]),
    ("perturb-out-inside-run",
     lambda w: ["perturb", "--kind", "EE", "--in", w["sets"] / "static.jsonl", "--out", w["sets"] / "ee"],
     lambda w: [w["sets"], "lies inside"], {"kept": lambda w: w["sets"] / "ee"}),
    ("perturb-unknown-kind", lambda w: ["perturb", "--kind", "XX", "--in", w["sets"] / "static.jsonl"],
     lambda w: ["'XX'", "VR, EE, AG, SR"]),
    # train (input errors found before torch is loaded)
    ("train-sets-not-a-run", lambda w: ["train", "--sets", w["emptydir"], "--out", _o("t1")(w)],
     lambda w: [w["emptydir"], "not a complete run directory"]),
    ("train-train-lists", lambda w: ["train", "--sets", w["sets_train_lists"], *TINY_TRAIN, "--out", _o("t2")(w)],
     lambda w: [w["sets_train_lists"] / "train.jsonl", "item 1"]),
    ("train-train-non-utf8", lambda w: ["train", "--sets", w["sets_train_nonutf8"], *TINY_TRAIN, "--out", _o("t3")(w)],
     lambda w: [w["sets_train_nonutf8"] / "train.jsonl", "UTF-8"]),
    ("train-train-truncated", lambda w: ["train", "--sets", w["sets_train_trunc"], *TINY_TRAIN, "--out", _o("t4")(w)],
     lambda w: [w["sets_train_trunc"] / "train.jsonl", "line 1"]),
    ("train-train-empty", lambda w: ["train", "--sets", w["sets_train_empty"], *TINY_TRAIN, "--out", _o("t5")(w)],
     lambda w: [w["sets_train_empty"] / "train.jsonl", "no items"]),
    ("train-train-directory", lambda w: ["train", "--sets", w["sets_train_dir"], *TINY_TRAIN, "--out", _o("t6")(w)],
     lambda w: [w["sets_train_dir"] / "train.jsonl", "is a directory"]),
    ("train-out-is-sets", lambda w: ["train", "--sets", w["sets"], *TINY_TRAIN, "--out", w["sets"]],
     lambda w: [w["sets"], "holds the input"]),
    ("train-out-inside-sets", lambda w: ["train", "--sets", w["sets"], *TINY_TRAIN, "--out", w["sets"] / "model"],
     lambda w: [w["sets"], "lies inside"], {"kept": lambda w: w["sets"] / "model"}),
    ("train-data-root-unwritable", lambda w: ["train", "--sets", w["sets"], *TINY_TRAIN],
     lambda w: ["{ro}", "data root"], {"unwritable": True}),
    # score and check read the same records
    *[(f"{command}-{name}", (lambda c, k: lambda w: [c, "--results", w[k]])(command, key),
       (lambda k, extra: lambda w: [w[k], *extra])(key, extra))
      for command in ("score", "check")
      for name, key, extra in [
          ("empty", "empty", ["no prediction records"]), ("lists", "lists", ["line 1"]),
          ("scalars", "scalars", ["line 1"]), ("missing-field", "pred_nofield", ["line 1", "prediction"]),
          ("prediction-number", "pred_num", ["line 1", "'prediction'"]),
          ("model-number", "pred_model_num", ["line 1", "'model'"]), ("id-list", "pred_id_list", ["line 1", "'id'"]),
          ("non-utf8", "pred_nonutf8", ["line 2", "UTF-8"]), ("truncated", "pred_trunc", ["line 2"]),
          ("binary", "binary", ["line 1"]), ("json-truncated", "json_trunc", ["not valid JSON"]),
          ("json-scalars", "json_scalars", ["item 0"]), ("empty-dir", "emptydir", ["no predictions.jsonl"]),
          ("run-non-utf8", "pred_run_nonutf8", ["line 1", "UTF-8"])]],
    ("check-details-is-input",
     lambda w: ["check", "--results", w["predictions"] / "predictions.jsonl",
                "--details", w["predictions"] / "predictions.jsonl"],
     lambda w: [w["predictions"] / "predictions.jsonl", "is the input"]),
    ("check-details-inside-run",
     lambda w: ["check", "--results", w["predictions"], "--details", w["predictions"] / "labels.jsonl"],
     lambda w: [w["predictions"], "lies inside"], {"kept": lambda w: w["predictions"] / "labels.jsonl"}),
    ("check-details-inside-run-of-input-file",
     lambda w: ["check", "--results", w["predictions"] / "predictions.jsonl", "--details", w["predictions"] / "l.jsonl"],
     lambda w: [w["predictions"], "lies inside"], {"kept": lambda w: w["predictions"] / "l.jsonl"}),
    ("check-details-directory", lambda w: ["check", "--results", w["predictions"], "--details", w["emptydir"]],
     lambda w: [w["emptydir"], "cannot write"]),
    ("check-details-unwritable", lambda w: ["check", "--results", w["predictions"], "--details", "{ro}/l.jsonl"],
     lambda w: ["{ro}", "cannot write"], {"unwritable": True}),
    # export
    ("export-lm-eval-sets-not-a-run", lambda w: ["export", "lm-eval", "--sets", w["emptydir"], "--out", _o("x1")(w)],
     lambda w: [w["emptydir"], "not a complete run directory"]),
    ("export-lm-eval-out-is-sets", lambda w: ["export", "lm-eval", "--sets", w["sets"], "--out", w["sets"]],
     lambda w: [w["sets"], "holds the input"]),
    ("export-hf-out-inside-sets", lambda w: ["export", "hf", "--sets", w["sets"], "--out", w["sets"] / "hf"],
     lambda w: [w["sets"], "lies inside"], {"kept": lambda w: w["sets"] / "hf"}),
    ("export-steps-out-is-input",
     lambda w: ["export", "steps", "--results", w["predictions"] / "predictions.jsonl", "--out",
                w["predictions"] / "predictions.jsonl"],
     lambda w: [w["predictions"] / "predictions.jsonl", "is the input"]),
    ("export-lm-eval-broken-sets", lambda w: ["export", "lm-eval", "--sets", w["sets_static_num"], "--out", _o("x2")(w)],
     lambda w: [w["sets_static_num"] / "static.jsonl", "item 1"]),
    # notebook: every parameter error before any kernel starts
    ("notebook-unknown", lambda w: ["notebook", "99_nope", "--profile", "tiny", "--out", _o("n.ipynb")(w)],
     lambda w: ["99_nope", "known:"]),
    ("notebook-unknown-profile", lambda w: ["notebook", "01_generate", "--profile", "nope", "--out", _o("n.ipynb")(w)],
     lambda w: ["nope.yaml"]),
    ("notebook-wrong-type", lambda w: ["notebook", "01_generate", "--profile", "tiny", "-p", 'n_derivations="many"',
                                       "--out", _o("n.ipynb")(w)], lambda w: ["'n_derivations'", "many"]),
    ("notebook-unknown-parameter", lambda w: ["notebook", "01_generate", "--profile", "tiny", "-p", "n_derivs=3",
                                              "--out", _o("n.ipynb")(w)], lambda w: ["n_derivs", "declared"]),
    ("notebook-out-of-range", lambda w: ["notebook", "01_generate", "--profile", "tiny", "-p", "n_derivations=-3",
                                         "--out", _o("n.ipynb")(w)], lambda w: ["'n_derivations'", "-3"]),
    ("notebook-param-without-value", lambda w: ["notebook", "01_generate", "--profile", "tiny", "-p", "n_derivations",
                                                "--out", _o("n.ipynb")(w)], lambda w: ["NAME=VALUE"]),
    ("notebook-out-directory", lambda w: ["notebook", "09_paper_outputs", "--profile", "tiny", "--out", w["emptydir"]],
     lambda w: [w["emptydir"], ".ipynb"]),
    ("notebook-out-is-the-notebook", lambda w: ["notebook", "09_paper_outputs", "--profile", "tiny", "--out",
                                                REPO / "notebooks" / "09_paper_outputs.ipynb"],
     lambda w: ["09_paper_outputs.ipynb", "is the input"]),
    ("notebook-out-unwritable", lambda w: ["notebook", "09_paper_outputs", "--profile", "tiny", "--out", "{ro}/x.ipynb"],
     lambda w: ["{ro}", "cannot write"], {"unwritable": True}),
    # report replaces its --out as a whole
    ("report-out-is-build", lambda w: ["report", "--profile", "tiny", "--build", w["build"], "--out", w["build"]],
     lambda w: [w["build"], "holds the input"]),
    ("report-out-not-a-report", lambda w: ["report", "--profile", "tiny", "--build", w["emptydir"], "--out", w["notes"]],
     lambda w: [w["notes"], "not a report directory"]),
    ("report-broken-executed-notebook",
     lambda w: ["report", "--profile", "tiny", "--build", w["build"], "--out", _o("report")(w)],
     lambda w: [w["build"] / "01_generate.ipynb", "not a readable executed notebook"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_it(case, world, request, capsys, monkeypatch):
    name, argv_of, named_of, *rest = case
    options = rest[0] if rest else {}
    monkeypatch.setenv("DERIVLIB_DATA", str(world["root"] / "data"))
    monkeypatch.setenv("DERIVLIB_FIGURES", str(world["root"] / "figures"))
    ro = ""
    if options.get("unwritable"):
        ro = str(request.getfixturevalue("unwritable"))
        monkeypatch.setenv("DERIVLIB_DATA", ro + "/data")
    argv = [str(a).replace("{ro}", ro) for a in argv_of(world)]
    before = digest(world["good"])
    capsys.readouterr()
    status = cli.main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2, f"exit status {status}; stderr: {err}"
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for part in named_of(world):
        assert str(part).replace("{ro}", ro) in lines[0], f"{part} not named in: {lines[0]}"
    assert digest(world["good"]) == before, "a good input was changed"
    if "kept" in options:
        assert not options["kept"](world).exists()


# ----------------------------------------------------------------------------------- models

@pytest.fixture(scope="module")
def model_world(world, tmp_path_factory) -> dict:
    """A saved (untrained) tiny model as a train_t5 run, and broken copies of it."""
    root = tmp_path_factory.mktemp("bad_models")
    config = t5.TrainConfig(vocab_size=300, d_model=16, d_ff=32, num_layers=1, num_heads=2)
    texts = [t for item in runs.load_set(world["sets"], "train") for t in (item["prompt"], item["derivation"])]
    model, tokenizer, _ = t5.build_model_and_tokenizer(config, texts)
    good = root / "model_run"
    model.save_pretrained(good / "model")
    tokenizer.save_pretrained(good / "model")
    atomic_write_json(good / "summary.json", {"model": "t5-scratch"})
    complete_run(good, "train_t5")

    def variant(name, change):
        directory = root / name
        shutil.copytree(good, directory)
        change(directory / "model")
        return directory

    weights = good / "model" / "model.safetensors"
    f = {
        "no_weights": variant("no_weights", lambda m: (m / "model.safetensors").unlink()),
        "bad_config": variant("bad_config", lambda m: (m / "config.json").write_text("{broken")),
        "cut_weights": variant("cut_weights", lambda m: (m / "model.safetensors").write_bytes(weights.read_bytes()[:1000])),
        "no_tokenizer": variant("no_tokenizer", lambda m: (m / "tokenizer.json").unlink()),
        "bad_tokenizer": variant("bad_tokenizer", lambda m: (m / "tokenizer.json").write_text("{oops")),
        "no_summary": variant("no_summary", lambda m: (m.parent / "summary.json").unlink()),
        "bad_summary": variant("bad_summary", lambda m: (m.parent / "summary.json").write_text("[1]")),
        "no_model": variant("no_model", lambda m: shutil.rmtree(m)),
    }
    plain = root / "pretrained_bad_config"
    plain.mkdir()
    (plain / "config.json").write_text("{broken")
    return {**world, "model": good, "pretrained_bad_config": plain, **f}


PREDICT = ["--max-new-tokens", "4", "--max-items", "1"]
MODEL_CASES = [
    *[(f"predict-{key.replace('_', '-')}", (lambda k: lambda w: ["predict", "--model", w[k], "--sets", w["sets"], *PREDICT,
                                                                  "--out", _o("pm-" + k)(w)])(key),
       (lambda k, extra: lambda w: [w[k], *extra])(key, extra))
      for key, extra in [("no_weights", ["no model weights"]), ("bad_config", ["config.json"]),
                         ("cut_weights", ["cannot load the saved model"]), ("no_tokenizer", ["tokenizer.json"]),
                         ("bad_tokenizer", ["cannot load the saved model"]), ("no_summary", ["summary.json"]),
                         ("bad_summary", ["summary.json"]), ("no_model", ["not a saved model directory"])]],
    ("predict-model-is-sets",
     lambda w: ["predict", "--model", w["sets"], "--sets", w["sets"], *PREDICT, "--out", _o("pm1")(w)],
     lambda w: [w["sets"]]),
    ("predict-sets-static-number",
     lambda w: ["predict", "--model", w["model"], "--sets", w["sets_static_num"], *PREDICT, "--out", _o("pm2")(w)],
     lambda w: [w["sets_static_num"] / "static.jsonl", "item 1"]),
    ("predict-sets-static-non-utf8", lambda w: ["predict", "--model", w["model"], "--sets", w["sets_static_nonutf8"],
                                                *PREDICT, "--out", _o("pm3")(w)],
     lambda w: [w["sets_static_nonutf8"] / "static.jsonl", "UTF-8"]),
    ("predict-out-is-model", lambda w: ["predict", "--model", w["model"], "--sets", w["sets"], *PREDICT, "--out", w["model"]],
     lambda w: [w["model"], "holds the input"]),
    ("predict-out-inside-model", lambda w: ["predict", "--model", w["model"], "--sets", w["sets"], *PREDICT,
                                            "--out", w["model"] / "p"],
     lambda w: [w["model"], "lies inside"], {"kept": lambda w: w["model"] / "p"}),
    ("predict-out-is-sets", lambda w: ["predict", "--model", w["model"], "--sets", w["sets"], *PREDICT, "--out", w["sets"]],
     lambda w: [w["sets"], "holds the input"]),
    ("train-pretrained-bad-config", lambda w: ["train", "--sets", w["sets"], "--model", w["pretrained_bad_config"],
                                               *TINY_TRAIN, "--out", _o("tm1")(w)],
     lambda w: [w["pretrained_bad_config"], "parameter 'model'"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_bad_model_input_is_one_line_naming_it(case, model_world, capsys, monkeypatch):
    name, argv_of, named_of, *rest = case
    options = rest[0] if rest else {}
    monkeypatch.setenv("DERIVLIB_DATA", str(model_world["root"] / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = [str(a) for a in argv_of(model_world)]
    before = digest(model_world["model"])
    capsys.readouterr()
    status = cli.main(argv)
    err = capsys.readouterr().err
    # transformers draws a progress bar on stderr while it loads weights; the error is the last line
    lines = [line for line in err.strip().splitlines() if "Loading weights" not in line]
    assert status == 2, f"exit status {status}; stderr: {err}"
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for part in named_of(model_world):
        assert str(part) in lines[0], f"{part} not named in: {lines[0]}"
    assert digest(model_world["model"]) == before
    if "kept" in options:
        assert not options["kept"](model_world).exists()


# ----------------------------------------------------------------------------------- in a kernel

@pytest.mark.slow
def test_an_error_inside_a_notebook_is_one_line_naming_the_cell(tmp_path):
    """An upstream run that does not exist is found by the stage inside the kernel: the command
    still says it in one line, exit status 2, naming the notebook, the cell and the path."""
    env = {**os.environ, "DERIVLIB_DATA": str(tmp_path / "data"), "DERIVLIB_FIGURES": str(tmp_path / "figures")}
    out = tmp_path / "02.ipynb"
    result = subprocess.run([sys.executable, "-m", "derivlib", "notebook", "02_testsets", "--profile", "tiny",
                             "--out", str(out)], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in errors[0]
    assert "02_testsets" in errors[0] and "ParameterError" in errors[0] and "generate/tiny" in errors[0]
    assert not out.exists()
