"""Symbolic checking: released references are all correct; corrupted ones get the right label;
the check command and stage ``error_analysis``."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import random
from collections import defaultdict

import pandas as pd
import pytest
import sympy as sp

from derivlib import check, derivation
from derivlib.__main__ import main
from derivlib.base.files import read_jsonl, write_jsonl
from derivlib.base.params import ParameterError
from derivlib.base.vocabulary import SETS, field
from derivlib.readers import released
from derivlib.stages import error_analysis as stage
from derivlib.stages import rundir

x = sp.Symbol("x")
f = sp.Function("f")
# f(x) = x^2; d/dx f = d/dx x^2; d/dx f = 2x; the goal
TOY = [["premise", sp.srepr(sp.Eq(f(x), x**2))],
       [["differentiate", 1, sp.srepr(x)], sp.srepr(sp.Eq(sp.Derivative(f(x), x), sp.Derivative(x**2, x)))],
       [["evaluate_derivatives", 2], sp.srepr(sp.Eq(sp.Derivative(f(x), x), 2 * x))]]


def labels(equations, steps=TOY):
    return check.check_derivation(equations, steps).labels


def test_labels_on_a_toy_derivation():
    reference = [r"f{(x)} = x^{2}", r"\frac{d}{d x} f{(x)} = \frac{d}{d x} x^{2}", r"\frac{d}{d x} f{(x)} = 2 x"]
    result = check.check_derivation(" and ".join(reference), TOY)
    assert result.labels == ["reference"] * 3 and result.goal_reached and result.skipped_steps == 0
    assert labels([reference[0], reference[0], reference[2]]) == ["reference", "redundant", "reference"]
    assert labels([reference[0], r"\frac{d}{d x} f{(x)} = 3 x"]) == ["reference", "incorrect"]
    assert labels([reference[0], r"\frac{d}{d x} f{(x)} = \frac{2 f{(x)}}{x}", reference[2]]) == \
        ["reference", "valid", "reference"]  # a different correct step that the goal uses
    assert labels([reference[0], r"\cos{(f{(x)})} = \cos{(x^{2})}", reference[2]]) == \
        ["reference", "irrelevant", "reference"]
    assert labels([reference[0], r"\frac{d}{d x} f{(x) = 2"]) == ["reference", "unparseable"]
    skipped = check.check_derivation([reference[0], reference[2]], TOY)
    assert skipped.skipped_steps == 1 and skipped.goal_reached


def test_integration_constants():
    c = sp.Symbol("C")
    steps = [["premise", sp.srepr(sp.Eq(f(x), sp.cos(x)))],
             [["integrate", 1, sp.srepr(x)], sp.srepr(sp.Eq(sp.Integral(f(x), x), sp.Integral(sp.cos(x), x)))],
             [["evaluate_integrals", 2], sp.srepr(sp.Eq(sp.Integral(f(x), x), c + sp.sin(x)))]]
    good = [r"f{(x)} = \cos{(x)}", r"\int f{(x)} dx = \int \cos{(x)} dx", r"\int f{(x)} dx = K + \sin{(x)}",
            r"(\int f{(x)} dx)^{2} = (K + \sin{(x)})^{2}"]
    assert labels(good, steps) == ["reference", "reference", "valid", "valid"]
    assert labels(good[:2] + [r"\int f{(x)} dx = K - \sin{(x)}"], steps)[-1] == "incorrect"
    # a model's constant K later used as an integration variable: zeroing K must not touch dK
    # (SymPy refused the limits and the whole of 07 stopped)
    last = check.check_derivation(good[:3] + [r"\int e^{K^{3}} dK = K"], steps).equations[-1]
    assert (last.label, last.reason) == ("incorrect", "false")


def test_bad_records_are_named():
    with pytest.raises(ValueError, match="srepr_derivation"):
        check.check_record({"id": "x1", "prediction": "x = 1", "srepr_derivation": []})


def test_the_dialect_is_split_and_chains_are_labelled():
    answer = (r"We have $f(x) = x^2$, so $\frac{d}{dx} f(x) = \frac{d}{dx} x^2 = 2x$. "
              r"\begin{align} \frac{d}{d x} f{(x)} &= 2 x \\ f{(x)} &= 3 \end{align}")
    result = check.check_derivation(answer, TOY)
    assert [" ".join(e.text.split()) for e in result.equations] == [
        "f(x) = x^2", r"\frac{d}{dx} f(x) = \frac{d}{dx} x^2", r"\frac{d}{dx} x^2 = 2x", r"\frac{d}{d x} f{(x)} = 2 x",
        "f{(x)} = 3"]
    assert [e.chain for e in result.equations] == [False, True, True, False, False]
    assert result.labels == ["reference", "reference", "irrelevant", "reference", "incorrect"]
    assert result.length == 5 and result.goal_reached  # the chain's links count one by one
    # the authors' format is split exactly as before
    plain = check.check_derivation(REFERENCE, TOY)
    assert [e.text for e in plain.equations] == REFERENCE.split(" and ") and not any(e.chain for e in plain.equations)


def test_step_ratings_and_the_first_wrong_step():
    equations = [r"f{(x)} = x^{2}", r"\cos{(f{(x)})} = \cos{(x^{2})}", r"f{(x)} = x^{2}", r"\frac{d}{d x} f{(x)} = 3 x",
                 r"\frac{d}{d x} f{(x) = 2", r"\frac{d}{d x} f{(x)} = 2 x"]
    result = check.check_derivation(equations, TOY)
    assert result.labels == ["reference", "irrelevant", "redundant", "incorrect", "unparseable", "reference"]
    assert result.ratings == [1, 0, 0, -1, None, 1] and result.first_wrong_step == 3
    row = result.to_dict()
    assert row["ratings"] == result.ratings and row["first_wrong_step"] == 3
    assert [e["rating"] for e in row["equations"]] == result.ratings
    assert [e["reference_step"] for e in row["equations"]] == [0, None, 0, None, None, 2]
    assert check.DerivationCheck.from_dict(row).to_dict() == row
    assert check.check_derivation(equations[:1], TOY).first_wrong_step is None
    # a row written before these fields existed still loads
    old = {k: v for k, v in row.items() if k not in ("ratings", "first_wrong_step")}
    old["equations"] = [{k: v for k, v in e.items() if k in ("text", "label", "reason", "latex")} for e in row["equations"]]
    assert check.DerivationCheck.from_dict(old).labels == result.labels


def test_summary_parse_share_and_failures_by_kind():
    checks = [check.check_derivation(text, TOY, model="m", set_name="static", id=str(i)) for i, text in enumerate([
        r"( y) } = x^{2} and \frac{d}{d x} f{(x)} = 2 x",                 # lost its beginning
        r"f{(x)} = x^{2} and \frac{d}{d x} f{(x)} = \frac{d}{d x} x^{",   # cut off at the end
        r"f{(x)} = x^{2} and x + 1 and \frac{d}{d x} f{(x)} = 2 x",        # a piece without =
        r"f{(x)} = (x^{2} and \frac{d}{d x} f{(x)} = 2 x",                  # unbalanced
        r"f{(x)} = x \sum x and \frac{d}{d x} f{(x)} = 2 x",                # a LaTeX command not read
        r"( x) } = x^{2} and \frac{d}{d x} f{(x)} = 2 x",                 # the premise, its start lost
    ])]
    table = check.summarize(checks)
    assert list(table.columns) == ["model", "set", *check.COUNT_COLUMNS]
    assert table.loc[0, "unparseable"] == 4 and table.loc[0, "cut_off"] == 1 and table.loc[0, "equations"] == 13
    assert table.loc[0, "parsed_share"] == pytest.approx(9 / 13)
    assert "parsed %" in check.format_table(table)
    assert checks[1].equations[1].rating is None and "ends inside" in checks[1].equations[1].reason
    restored = checks[-1].equations[0]
    assert (restored.label, restored.restored, restored.latex) == ("reference", "f{", "f{\\left(x \\right)} = x^{2}")
    failures = check.failures_table(checks)
    assert failures["kind"].tolist() == ["start missing", "cut off at the end", "unbalanced brackets",
                                         "not an equation", "unknown command"]
    assert failures.loc[1, "reason"].startswith("the answer ends inside this equation")
    assert list(failures.columns) == ["model", "set", "id", "index", "kind", "reason", "text"]


def test_processbench_numbers():
    assert check.processbench([(None, None), (None, 2), (1, 1), (1, 3), (0, 0)]) == {
        "erroneous": 3, "correct": 2, "error_accuracy": 2 / 3, "correct_accuracy": 0.5, "f1": pytest.approx(4 / 7)}
    empty = check.processbench([])
    assert empty["erroneous"] == 0 and empty["f1"] != empty["f1"]  # NaN
    right = check.check_derivation(REFERENCE, TOY, model="m", set_name="static")
    valid_detour = check.check_derivation([r"f{(x)} = x^{2}", r"\frac{d}{d x} f{(x)} = \frac{2 f{(x)}}{x}",
                                           r"\frac{d}{d x} f{(x)} = 2 x"], TOY, model="m", set_name="static")
    wrong = check.check_derivation([r"f{(x)} = x^{2}", r"\frac{d}{d x} f{(x)} = 3 x"], TOY, model="m", set_name="static")
    garbled = check.check_derivation([r"f{(x)} = {", r"\frac{d}{d x} f{(x)} = 3 x"], TOY, model="m", set_name="static")
    assert check.symbolic_first_wrong_step(wrong) == (True, 1)
    assert check.symbolic_first_wrong_step(garbled) == (False, 1)  # the unparseable one might be the first error
    assert [check.reference_match_first_deviation(c) for c in (right, valid_detour, wrong)] == [None, 1, 1]
    table = check.processbench_table([right, valid_detour, wrong, garbled])
    assert table[["derivations", "undetermined", "erroneous", "correct", "error_accuracy", "correct_accuracy"]
                 ].values.tolist() == [[4, 1, 1, 2, 1.0, 0.5]]
    assert table.loc[0, "f1"] == pytest.approx(2 / 3)
    perfect = check.processbench_table([right, valid_detour, wrong], verifier=lambda c: c.first_wrong_step)
    assert perfect.loc[0, "f1"] == 1.0


# ----------------------------------------------------------------------------------- released files

def _references(paper_results_dir):
    items = released.load_items(paper_results_dir / "gpt-4_results.json")
    return [item[field(s, "srepr_derivation")] for item in items for s in SETS]


@pytest.mark.paper_results
def test_released_references_are_correct(paper_results_dir):
    references = _references(paper_results_dir)
    good = 0
    for steps in references:
        result = check.check_derivation(derivation.Derivation(steps=steps).latex(), steps)
        good += result.all_correct and result.goal_reached and result.skipped_steps == 0
    assert len(references) == 500
    assert good / len(references) >= 0.99


def _nonzero(side):
    value = side.doit()
    return value != 0 and not any(p.base == 0 for p in value.atoms(sp.Pow))


def _corruptions(steps, rng):
    """(kind, equations, index, expected) for each corruption that applies to this derivation.
    Corruptions that leave the equation true (a zero side, a factor equal to 1) or that rebuild
    another reference equation are not corruptions and are not made."""
    equations = [derivation.from_srepr(s) for _, s in steps]
    texts = [derivation.to_latex(e) for e in equations]
    as_text = lambda lhs, rhs: derivation.to_latex(sp.Eq(lhs, rhs, evaluate=False))  # noqa: E731
    known = {(e.lhs, e.rhs) for e in equations} | {(e.rhs, e.lhs) for e in equations}
    step_indices = [i for i, (a, _) in enumerate(steps) if not derivation.is_premise(derivation.normalise_annotation(a))]
    nonzero = [i for i in step_indices if _nonzero(equations[i].lhs) and _nonzero(equations[i].rhs)]
    out = []
    if nonzero:
        k = rng.choice(nonzero)
        out.append(("sign flipped", texts[:k] + [as_text(equations[k].lhs, -equations[k].rhs)] + texts[k + 1:], k, "incorrect"))
    factors = [(i, side, factor) for i in nonzero for side in ("lhs", "rhs")
               if isinstance(getattr(equations[i], side), sp.Mul)
               for factor in getattr(equations[i], side).args if not factor.is_Number and factor.doit() != 1]
    if factors:
        i, side, factor = rng.choice(factors)
        dropped = sp.Mul(*[a for a in getattr(equations[i], side).args if a != factor])
        lhs, rhs = (dropped, equations[i].rhs) if side == "lhs" else (equations[i].lhs, dropped)
        if (lhs, rhs) not in known:
            out.append(("factor dropped", texts[:i] + [as_text(lhs, rhs)] + texts[i + 1:], i, "incorrect"))
    k = rng.randrange(len(texts))
    out.append(("step duplicated", texts[:k + 1] + [texts[k]] + texts[k + 1:], k + 1, "redundant"))
    premise = equations[0]
    unrelated = as_text(sp.cos(premise.lhs) + 1, sp.cos(premise.rhs) + 1)  # true, and used by nothing
    position = rng.randint(1, len(texts) - 1)
    out.append(("unrelated valid equation inserted", texts[:position] + [unrelated] + texts[position:], position, "irrelevant"))
    inner = [i for i in step_indices if i != len(texts) - 1]
    if inner:
        r = rng.choice(inner)
        out.append(("intermediate step removed", texts[:r] + texts[r + 1:], None, "skipped"))
    return out


@pytest.mark.paper_results
def test_corrupted_references_get_the_right_label(paper_results_dir):
    outcomes = defaultdict(list)
    pairs = []  # ProcessBench-style: the first wrong step known by construction, and the check's
    for number, steps in enumerate(_references(paper_results_dir)):
        pairs.append((None, check.check_derivation(derivation.Derivation(steps=steps).latex(), steps).first_wrong_step))
        rng = random.Random(number)
        for kind, texts, index, expected in _corruptions(steps, rng):
            result = check.check_derivation(texts, steps)
            if expected == "incorrect":
                pairs.append((index, result.first_wrong_step))
            if expected == "skipped":
                right = result.skipped_steps >= 1 and result.goal_reached and result.all_correct
            else:
                right = result.labels[index] == expected
            outcomes[kind].append(right)
    assert len(outcomes) == 5
    for kind, rights in outcomes.items():
        assert len(rights) >= 150, kind
        assert sum(rights) / len(rights) >= 0.95, (kind, sum(rights), len(rights))
    bench = check.processbench(pairs)  # measured: 700/715 first wrong steps exact, 500/500 correct, F1 0.989
    assert bench["erroneous"] >= 700 and bench["correct"] == 500
    assert bench["error_accuracy"] >= 0.97 and bench["correct_accuracy"] >= 0.99 and bench["f1"] >= 0.98


@pytest.mark.paper_results
def test_released_outputs_parse_share_and_processbench(paper_results_dir):
    records = [r for path in released.results_files(paper_results_dir).values() for r in released.to_predictions(path)]
    checks = check.check_records(records, workers=2)
    table = check.summarize(checks)
    equations, unparseable = int(table["equations"].sum()), int(table["unparseable"].sum())
    # 79 of 5,131 before the dialect and the unknown-word rule; 59 before the lost-start rule (15),
    # the cut_off label (13) and fonts around an expression (6)
    assert equations == 5132 and unparseable == 25 and 1 - unparseable / equations >= 0.995
    assert int(table["cut_off"].sum()) == 13 and table[["too_large", "timeout"]].values.sum() == 0
    restored = [e for c in checks for e in c.equations if e.restored]
    assert len(restored) == 426 and {e.label for e in restored} == {"reference"}
    assert all(c.model == "flan-t5-large" for c in checks if c.equations and c.equations[0].restored)
    failures = check.failures_table(checks)
    assert len(failures) == unparseable + 13 and "unknown command" not in set(failures["kind"])
    assert failures["kind"].value_counts().to_dict() == {"outside the dialect": 5, "unbalanced brackets": 17,
                                                         "cut off at the end": 13, "not an equation": 3}
    chains = [e for c in checks for e in c.equations if e.chain]
    assert len(chains) == 2 and all(e.label != "unparseable" for e in chains)
    bench = check.processbench_table(checks)
    assert len(bench) == 10 and (bench["erroneous"] + bench["correct"] + bench["undetermined"]
                                 == bench["derivations"]).all()
    assert bench["f1"].between(0, 1).all()


# ----------------------------------------------------------------------------------- CLI

REDUNDANT = r"f{(x)} = x^{2} and \frac{d}{d x} f{(x)} = 2 x and \frac{d}{d x} f{(x)} = 2 x"
REFERENCE = r"f{(x)} = x^{2} and \frac{d}{d x} f{(x)} = \frac{d}{d x} x^{2} and \frac{d}{d x} f{(x)} = 2 x"


def toy_records(sets=("static", "EE"), model="toy", prediction=REDUNDANT) -> list[dict]:
    return [{"id": "t1", "model": model, "set": s, "prompt": "", "reference": REFERENCE,
             "prediction": prediction, "srepr_derivation": TOY} for s in sets]


def test_cli_csv(tmp_path, capsys):
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in toy_records()))
    assert main(["check", "--results", str(tmp_path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == ["model", "set", "equations", "unparseable", "cut_off", "reference", "valid", "incorrect",
                             "redundant", "irrelevant", "too_large", "timeout", "derivations", "goal_reached",
                             "with_wrong_step", "parsed_share"]
    assert [(r["set"], r["equations"], r["reference"], r["redundant"], r["goal_reached"]) for r in rows] == \
        [("static", "3", "2", "1", "1"), ("EE", "3", "2", "1", "1")]
    assert main(["check", "--results", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such predictions file" in capsys.readouterr().err


def test_cli_workers_give_the_same_output(tmp_path, capsys):
    records = toy_records() + toy_records(("AG",), prediction=r"f{(x)} = x^{2} = x x and x^{10^{10^{10}}} = 1")
    write_jsonl(tmp_path / "predictions.jsonl", records)
    outputs = []
    for workers in ("0", "1", "2"):
        details = tmp_path / f"labels{workers}.jsonl"
        assert main(["check", "--results", str(tmp_path / "predictions.jsonl"), "--format", "csv",
                     "--workers", workers, "--details", str(details)]) == 0
        outputs.append((capsys.readouterr().out, details.read_text()))
    assert outputs[0] == outputs[1] == outputs[2]
    written = read_jsonl(tmp_path / "labels0.jsonl")
    assert written[-1]["labels"] == ["reference", "valid", "too_large"] and written[-1]["equations"][1]["chain"]
    assert main(["check", "--results", str(tmp_path / "predictions.jsonl"), "--workers", "-1"]) == 2
    assert "workers" in capsys.readouterr().err


@pytest.mark.paper_results
def test_cli_on_released_results(flan_results, capsys):
    assert main(["check", "--results", str(flan_results), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["set"] for r in rows] == list(SETS)
    for row in rows:
        labelled = sum(int(row[label]) for label in check.LABELS)
        assert labelled == int(row["equations"]) and int(row["derivations"]) == 100


def test_cli_details_and_model_name(tmp_path, capsys):
    write_jsonl(tmp_path / "predictions.jsonl", toy_records())
    details = tmp_path / "out" / "labels.jsonl"
    assert main(["check", "--results", str(tmp_path / "predictions.jsonl"), "--model-name", "renamed",
                 "--format", "csv", "--details", str(details)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["model"] for r in rows} == {"renamed"}
    written = read_jsonl(details)
    assert [r["labels"] for r in written] == [["reference", "reference", "redundant"]] * 2
    assert check.DerivationCheck.from_dict(written[0]).to_dict() == written[0]


def test_cli_details_never_overwrites_an_input(tmp_path, capsys):
    predictions = tmp_path / "predictions.jsonl"
    write_jsonl(predictions, toy_records())
    before = predictions.read_bytes()
    for details in (predictions, tmp_path / "labels.jsonl"):
        # the second: inside the directory given as --results
        assert main(["check", "--results", str(tmp_path), "--details", str(details)]) == 2
        error = capsys.readouterr().err
        assert "would overwrite the input --results" in error or "lies inside the input" in error
    assert main(["check", "--results", str(predictions), "--details", str(predictions)]) == 2
    assert predictions.read_bytes() == before and not (tmp_path / "labels.jsonl").exists()


# ----------------------------------------------------------------------------------- stage 07

@dataclasses.dataclass(frozen=True)
class FixtureParams:
    profile: str = "fixture"


def predictions_run(records: list[dict]) -> str:
    """A complete predictions run published as ``predict_t5/fixture``, as 04 would publish it."""
    run = rundir.start_run("predict_t5", FixtureParams())
    write_jsonl(run.path("predictions.jsonl"), records)
    run.finish(records=len(records))
    return "predict_t5/fixture"


def test_error_analysis_stage_runs_then_loads(isolated_data, monkeypatch):
    monkeypatch.delenv(released.ENV, raising=False)
    wrong = r"f{(x)} = x^{2} and \frac{d}{d x} f{(x)} = 3 x"
    records = toy_records(("static", "EE")) + toy_records(("static",), model="other", prediction=wrong)
    namespace = {"predictions": [predictions_run(records)], "profile": "tiny"}
    run = stage.open_run(namespace)
    result = stage.run(run)
    assert run.complete and run.dir == run.final
    assert {"params.json", "meta.json", "checks.jsonl", "summary.csv", "failures.csv", "processbench.csv",
            "COMPLETE"} <= {p.name for p in run.dir.iterdir()}
    assert result.failures.empty and result.processbench["derivations"].tolist() == [1, 1, 1]
    assert result.summary[["model", "set", "equations", "reference", "redundant", "incorrect"]].values.tolist() == [
        ["other", "static", 2, 1, 0, 1], ["toy", "static", 3, 2, 1, 0], ["toy", "EE", 3, 2, 1, 0]]
    assert [c.labels for c in result.checks] == [["reference", "reference", "redundant"]] * 2 + [["reference", "incorrect"]]
    assert result.per_item["share correct"].round(3).tolist() == [0.667, 0.667, 0.5]
    assert {"rouge", "bleu", "gleu", "goal reached"} <= set(result.per_item)
    assert set(result.figures) == {"error_distribution", "rouge_vs_validity"}
    assert all(path.exists() for path in result.figures.values())
    assert {p.name for p in (isolated_data / "figures" / "tiny").iterdir()} == \
        {"error_distribution.png", "rouge_vs_validity.png"}

    again = stage.run(stage.open_run({**namespace, "workers": 2}))  # complete: loads (workers is not in the key)
    pd.testing.assert_frame_equal(again.summary, result.summary)
    pd.testing.assert_frame_equal(again.per_item, result.per_item)
    pd.testing.assert_frame_equal(again.processbench, result.processbench)
    assert [c.to_dict() for c in again.checks] == [c.to_dict() for c in result.checks]
    assert again.figures == result.figures


def test_error_analysis_stage_names_bad_parameters(isolated_data, tmp_path):
    with pytest.raises(ParameterError, match="predict_t5/nowhere"):
        stage.open_run({"predictions": ["predict_t5/nowhere"]})
    with pytest.raises(ParameterError, match="nothing to check"):
        stage.open_run({"predictions": [], "include_paper_results": False})
    with pytest.raises(ParameterError, match="workers"):
        stage.open_run({"predictions": [], "workers": 0})
    with pytest.raises(ParameterError, match="time_limit"):
        stage.open_run({"predictions": [], "time_limit": -1.0})
    with pytest.raises(ParameterError, match="sed"):
        stage.open_run({"predictions": [], "sed": 1})


@pytest.mark.parametrize("workers", [0, 1])
def test_progress_lines_every_200_derivations_with_rate_and_time_left(workers):
    records = [{**record, "id": f"t{index}"} for index in range(200) for record in toy_records(("static",))]
    lines = []
    checks = check.check_records(records, workers=workers, log=lines.append)
    assert len(checks) == 200
    assert len(lines) == 1 and lines[0].startswith("checked 200/200 derivations (") and "ETA 00:00" in lines[0]


def test_only_the_end_of_a_written_answer_is_cut_off():
    cut = r"f{(x)} = x^{2} and \frac{d}{d x} f{(x)} = \frac{d}{d x"
    assert labels(cut) == ["reference", "cut_off"]
    assert labels(cut.split(" and ")) == ["reference", "unparseable"]  # a list: the model ended it
    assert labels(cut + r" and f{(x)} = x^{2}") == ["reference", "unparseable", "redundant"]
    assert labels(r"f{(x)} = x^{2} and \frac{d}{d x} f{(x)} = 2 x)") == ["reference", "unparseable"]  # not open
