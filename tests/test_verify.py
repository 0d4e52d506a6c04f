"""The verifier: confirms correct steps, names every wrong one, reads released files."""
import json
import subprocess
import sys

import pytest
import sympy as sp

from derivlib import verify
from derivlib.readers import runs

x, y = sp.symbols("x y")
f = sp.Function("f")


def S(expr):
    return sp.srepr(expr)


GOOD = [
    ["premise", S(sp.Eq(f(x), sp.sin(x)))],
    [["differentiate", 1, S(x)], S(sp.Eq(sp.Derivative(f(x), x), sp.Derivative(sp.sin(x), x)))],
    [["evaluate_derivatives", 2], S(sp.Eq(sp.Derivative(f(x), x), sp.cos(x)))],
    [["add", 3, S(y)], S(sp.Eq(sp.Derivative(f(x), x) + y, sp.cos(x) + y))],
    [["power", 1, 2], S(sp.Eq(f(x) ** 2, sp.sin(x) ** 2))],
    [["integrate", 1, S(x)], S(sp.Eq(sp.Integral(f(x), x), sp.Integral(sp.sin(x), x)))],
    [["evaluate_integrals", 6], S(sp.Eq(sp.Integral(f(x), x), -sp.cos(x) + sp.Symbol("C")))],
]


def test_correct_steps_pass():
    results = verify.verify_steps(GOOD)
    assert [r.status for r in results] == ["ok"] * len(GOOD), [r.reason for r in results]


def test_wrong_operand_is_named():
    bad = [list(s) for s in GOOD]
    bad[3] = [["add", 3, S(x)], bad[3][1]]
    results = verify.verify_steps(bad)
    failing = [r for r in results if not r.ok]
    assert [r.step for r in failing] == [4]
    assert "add applied to equation 3" in failing[0].reason


def test_forward_reference_and_bad_premise_fail():
    steps = [["premise", S(sp.Eq(f(x), x + y))],  # missing the argument y
             [["add", 2, S(y)], S(sp.Eq(f(x) + y, x + 2 * y))]]
    results = verify.verify_steps(steps)
    assert not results[0].ok and "missing ['y']" in results[0].reason
    assert not results[1].ok and "does not precede" in results[1].reason


def test_substitution_both_directions():
    steps = [["premise", S(sp.Eq(f(x), x ** 2))],
             ["get_premise", S(sp.Eq(sp.Function("g")(x), x ** 2 + 1))],
             [["substitute_RHS_for_LHS", 2, 1], S(sp.Eq(sp.Function("g")(x), f(x) + 1))],
             [["substitute_LHS_for_RHS", 3, 1], S(sp.Eq(sp.Function("g")(x), x ** 2 + 1))]]
    # step 4 restates step 2, which the generator would reject, but it is a correct substitution
    assert all(r.ok for r in verify.verify_steps(steps))
    wrong = steps[:3] + [[["substitute_LHS_for_RHS", 3, 1], S(sp.Eq(sp.Function("g")(x), x ** 3 + 1))]]
    assert not verify.verify_steps(wrong)[3].ok


def test_expression_exchange_premise_accepted():
    steps = [["premise", S(sp.Eq(sp.sin(x), f(x), evaluate=False))]]
    assert verify.verify_steps(steps)[0].ok


@pytest.mark.parametrize("fixture", ["flan_results", "gpt4_results"])
def test_released_derivations_pass_and_defects_are_named(fixture, request):
    path = request.getfixturevalue(fixture)
    report = verify.verify_derivations(runs.iter_steps(path), str(path))
    assert report.source == str(path)
    assert report.n_steps == 2940  # 500 derivations: static + VR, EE, AG, SR
    assert report.pass_rate >= 0.995
    failing = {(i, key, r.step) for i, key, r in report.failures}
    # the VR renaming of item 50 missed the integration variable C_2
    assert ("paper-050", "VR srepr_derivation", 4) in failing


def test_cli_exit_status(tmp_path, flan_results):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"id": "a", "srepr_derivation": GOOD}) + "\n")
    done = subprocess.run([sys.executable, "-m", "derivlib", "verify", str(good)], capture_output=True, text=True)
    assert done.returncode == 0 and "0 failed" in done.stdout
    bad_steps = [list(s) for s in GOOD]
    bad_steps[2] = [["evaluate_derivatives", 2], S(sp.Eq(sp.Derivative(f(x), x), sp.sin(x)))]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "b", "srepr_derivation": bad_steps}) + "\n")
    done = subprocess.run([sys.executable, "-m", "derivlib", "verify", str(bad)], capture_output=True, text=True)
    assert done.returncode == 1 and "FAIL b [srepr_derivation] step 3" in done.stdout
    run_dir = tmp_path / "run"  # a generate run directory holds derivations.jsonl
    run_dir.mkdir()
    (run_dir / "derivations.jsonl").write_text(bad.read_text())
    done = subprocess.run([sys.executable, "-m", "derivlib", "verify", str(run_dir)], capture_output=True, text=True)
    assert done.returncode == 1 and "FAIL b [srepr_derivation] step 3" in done.stdout
    done = subprocess.run([sys.executable, "-m", "derivlib", "verify", str(tmp_path / "missing.jsonl")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "missing.jsonl" in done.stderr


def test_report_of_many_derivations_survives_json():
    bad = [list(s) for s in GOOD]
    bad[3] = [["add", 3, S(x)], bad[3][1]]
    report = verify.verify_derivations([("a", "srepr_derivation", GOOD), ("b", "VR srepr_derivation", bad)], "two")
    assert report.n_steps == 2 * len(GOOD)
    assert [(i, key, r.step) for i, key, r in report.failures] == [("b", "VR srepr_derivation", 4)]
    assert report.summary().startswith("two: 2 derivations, 14 steps, 13 ok, 1 failed")
    again = verify.FileReport.from_json(json.loads(json.dumps(report.to_json())))
    assert again == report and again.summary() == report.summary()
