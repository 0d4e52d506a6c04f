"""The generator: schema, determinism across workers, filters, bad input, the stage."""
import json
import os
import random
import subprocess
import sys
from collections import Counter

import pytest
import sympy as sp

from derivlib import derivation as D
from derivlib import generate as gen
from derivlib import rules, sympy_fast
from derivlib.base.params import ParameterError, validate
from derivlib.derivation import AuthorsLatexPrinter, from_srepr, normalise_annotation, split_equations, to_srepr
from derivlib.stages import generate as stage
from derivlib.verify import verify_record, verify_steps


N = 12


@pytest.fixture(scope="module")
def records():
    out, rejections = gen.generate(N, seed=0, workers=1)
    return out, rejections


def test_records_follow_the_shared_format(records):
    out, _ = records
    assert len(out) == N
    for record in out:
        assert set(record) >= {"id", "seed", "index", "srepr_derivation", "equations", "derivation"}
        assert record["id"] == f"g0-{record['index']}"
        steps = record["srepr_derivation"]
        assert steps[0][0] in ("premise", "get_premise", "renaming_premise")  # extraction may drop the first
        assert record["derivation"] == " and ".join(record["equations"])
        assert len(record["equations"]) == len(steps)
        for annotation, srepr in steps:
            assert isinstance(from_srepr(srepr), sp.Equality)
            normalise_annotation(annotation)
            if isinstance(annotation, list):
                assert isinstance(annotation[1], int)
                assert 1 <= annotation[1] <= len(steps)


def test_lengths_respect_the_target_distribution(records):
    out, _ = records
    # L is in [4, 9]; one step can merge two chains, so a derivation may end a little above L
    assert all(4 <= len(r["srepr_derivation"]) <= 12 for r in out)


def test_every_generated_step_verifies(records):
    out, _ = records
    for record in out:
        failures = [r for r in verify_record(record) if not r.ok]
        assert not failures, (record["id"], failures)


def test_verification_in_two_processes_equals_one(records):
    out, _ = records
    one = stage.verify_records(out, "ours", workers=1)
    assert one.n_steps == sum(len(r["srepr_derivation"]) for r in out) and not one.failures
    lines = []
    assert stage.verify_records(out, "ours", workers=2, log=lines.append) == one
    # 8 slices of ceil(N / 8) derivations; a line as each but the last comes back
    size = -(-len(out) // 8)
    assert [line.split(" (")[0] for line in lines] == [
        f"verified {size * k}/{len(out)} derivations" for k in range(1, 8) if size * k < len(out)]


def test_same_seed_same_records_and_other_seed_differs(records):
    out, rejections = records
    again, rejections_again = gen.generate(N, seed=0, workers=1)
    assert again == out and rejections_again == rejections
    other, _ = gen.generate(3, seed=1, workers=1)
    assert other[0]["srepr_derivation"] != out[0]["srepr_derivation"]


def test_one_and_two_workers_give_identical_records():
    one = json.dumps(gen.generate(10, seed=0, workers=1))
    # a separate interpreter with another hash seed: nothing may depend on set ordering
    code = ("import json; from derivlib import generate as g; "
            "print(json.dumps(g.generate(10, seed=0, workers=2)))")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                          env={**os.environ, "PYTHONHASHSEED": "123"})
    assert done.stdout.strip() == one


def test_rejections_are_counted_by_reason(records):
    _, rejections = records
    assert rejections, "a dozen derivations always reject some proposals"
    assert "already_present" in rejections
    assert all(isinstance(v, int) and v > 0 for v in rejections.values())


def test_recency_weights_are_cubic():
    assert gen.recency_weights(11, 10)[::-1] == [730, 513, 344, 217, 126, 65, 28, 9, 2, 1, 1]


def test_longest_chain_extraction_and_renumbering():
    x = sp.Symbol("x")
    eqs = [sp.Eq(sp.Function("f")(x), x), sp.Eq(sp.Function("g")(x), x ** 2),
           sp.Eq(sp.Function("g")(x) + 1, x ** 2 + 1), sp.Eq(sp.Function("f")(x) * 2, 2 * x)]
    annotations = ["premise", "get_premise", ["add", 2, sp.Integer(1)], ["times", 1, sp.Integer(2)]]
    assert gen.extract_longest_chain(annotations) == [1, 2]
    chain = gen.longest_chain(eqs, annotations)
    assert chain == [(eqs[1], "get_premise"), (eqs[2], ["add", 1, sp.Integer(1)])]


def test_target_length_is_in_range():
    rng = random.Random(0)
    lengths = Counter(gen.draw_length(rng, gen.DEFAULT_CONFIG) for _ in range(2000))
    assert set(lengths) == set(range(4, 10))
    assert lengths[7] > lengths[4] and lengths[7] > lengths[9]


def test_length_parameters_shape_the_derivations():
    config = gen.make_config(length_mean=4.0, length_std=1.0, min_length=4, max_length=4, max_latex_length=120)
    records, _ = gen.generate(12, seed=0, workers=1, config=config)
    lengths = Counter(len(record["srepr_derivation"]) for record in records)
    # generation stops once the longest dependency chain has at least L equations; a step that
    # joins two chains (a substitution) can lengthen it by several, so a few overshoot
    assert min(lengths) == 4 and lengths[4] > len(records) / 2
    for record in records:
        # the filter measures SymPy's raw LaTeX (with \left/\right), longer than the cleaned text
        assert all(len(equation) < 120 for equation in split_equations(record["derivation"]))


def test_notebook_length_parameters_reach_the_generator():
    params = validate(stage.Params, {"min_length": 5, "max_length": 6, "length_mean": 5,
                                     "max_latex_length": 200, "max_rejections": 30})
    config = params.generator_config()
    assert type(config) is gen.GeneratorConfig
    assert (config.min_length, config.max_length, config.length_mean, config.max_latex_length,
            config.max_rejections) == (5, 6, 5.0, 200, 30)
    assert stage.Params().generator_config() == gen.DEFAULT_CONFIG


def test_next_step_extends_a_prefix_under_the_filters(records):
    out, _ = records
    steps = out[0]["srepr_derivation"]
    prefix = steps[:-1]
    proposals = set()
    for k in range(5):
        step = gen.next_step(prefix, random.Random(k))
        assert step is not None
        result = verify_steps(prefix + [step])
        assert all(r.ok for r in result), result[-1]
        assert from_srepr(step[1]) not in {from_srepr(s) for _, s in prefix}
        proposals.add(step[1])
    assert len(proposals) > 1


def test_next_step_returns_none_when_every_proposal_fails():
    x = sp.Symbol("x")
    steps = [["premise", sp.srepr(sp.Eq(sp.Function("f")(x), x))]]
    config = gen.make_config(arity_weights={"1": 1}, operator_weights={"evaluate_derivatives": 1})
    assert gen.next_step(steps, random.Random(0), config) is None


def test_operators_act_on_both_sides():
    x, y = sp.symbols("x y")
    eq = sp.Eq(sp.Function("f")(x), x)
    assert rules.add(eq, y) == sp.Eq(sp.Function("f")(x) + y, x + y)
    assert rules.power(eq, 2) == sp.Eq(sp.Function("f")(x) ** 2, x ** 2)
    assert rules.differentiate(eq, x).lhs == sp.Derivative(sp.Function("f")(x), x)
    assert rules.evaluate_derivatives(rules.differentiate(eq, x)).rhs == 1
    assert rules.substitute_RHS_for_LHS(sp.Eq(y, x + 1), eq) == sp.Eq(y, sp.Function("f")(x) + 1)
    assert len(rules.OPERATORS) == 18


def test_evaluate_integrals_adds_an_unused_constant():
    x = sp.Symbol("x")
    eq = sp.Eq(sp.Integral(sp.Function("f")(x), x), sp.Integral(x, x))
    result = rules.evaluate_integrals(eq, {x}, random.Random(0))
    constant = (result.rhs - x ** 2 / 2)
    assert constant.is_Symbol and constant != x


@pytest.mark.parametrize("bad, name", [
    ({"operator_weights": {"frobnicate": 1}}, "operator_weights"),
    ({"arity_weights": {"0": 0, "1": 0, "2": 0}}, "arity_weights"),
    ({"operator_weights": {"cos": 0}}, "operator_weights"),
    ({"arity_weights": {"3": 1}}, "arity_weights"),
    ({"min_length": 5, "max_length": 4}, "min_length"),
    ({"length_mean": 7.0, "length_std": 0.0, "min_length": 4, "max_length": 4}, "length_mean"),
    ({"length_mean": 40.0, "length_std": 1.0}, "length_mean"),  # would redraw L forever
    ({"max_latex_length": 0}, "max_latex_length"),
])
def test_bad_configuration_names_the_parameter(bad, name):
    with pytest.raises(ParameterError, match=name):
        gen.make_config(**bad)


@pytest.mark.parametrize("n", [0, -3])
def test_bad_n_is_refused_and_nothing_written(isolated_data, n):
    with pytest.raises(ParameterError, match="'n'"):
        gen.generate(n)
    with pytest.raises(ParameterError, match="'n_derivations'"):
        stage.open_run({"n_derivations": n})
    assert not (isolated_data / "data").exists()


def test_cli_errors_name_the_parameter(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = tmp_path / "run"
    for args, word in ((["--n", "0"], "'n_derivations'"),
                       (["--n", "2", "--operator-weights", '{"nope": 1}'], "operator_weights"),
                       (["--n", "2", "--arity-weights", '{"0": 0, "1": 0, "2": 0}'], "arity_weights"),
                       (["--n", "2", "--out", str(blocker / "run")], "'out'")):
        args = args if "--out" in args else [*args, "--out", str(out)]
        done = subprocess.run([sys.executable, "-m", "derivlib", "generate", *args],
                              capture_output=True, text=True, env={**os.environ, "DERIVLIB_DATA": str(tmp_path / "data")})
        assert done.returncode == 2 and word in done.stderr, done.stderr
        assert not out.exists() and not (tmp_path / "data").exists()
    assert blocker.read_text() == "x"


def test_resumed_run_equals_uninterrupted_run():
    chunks = {}
    full, counts = gen.generate(16, seed=3, workers=1, chunk_store=chunks)
    assert sorted(chunks) == [(0, 8), (8, 16)]
    del chunks[(8, 16)]  # as if killed before the last chunk was saved
    resumed, counts_again = gen.generate(16, seed=3, workers=1, chunk_store=chunks)
    assert resumed == full and counts_again == counts


def test_only_the_indices_needed_are_computed(monkeypatch):
    # with 4 rejections allowed most derivations are abandoned: each batch after the first covers
    # just as many indices as records are still missing, and nothing past the last record
    config = gen.make_config(max_rejections=4)
    computed = []
    original = gen.generate_range

    def spy(seed, start, stop, config):
        computed.extend(range(start, stop))
        return original(seed, start, stop, config)

    monkeypatch.setattr(gen, "generate_range", spy)
    records, rejections = gen.generate(12, seed=0, workers=1, config=config)
    assert len(records) == 12 and rejections["abandoned_derivation"] > 12
    assert computed == list(range(records[-1]["index"] + 1))


def test_two_workers_and_resumption_agree_when_derivations_are_abandoned(tmp_path):
    config = gen.make_config(max_rejections=4)
    one = gen.generate(12, seed=0, workers=1, config=config)
    chunks = stage.ChunkDirectory(tmp_path / "chunks")
    assert gen.generate(12, seed=0, workers=2, config=config, chunk_store=chunks) == one
    files = sorted((tmp_path / "chunks").iterdir())
    assert len(files) > 2 and len(chunks) == len(files)
    files[len(files) // 2].unlink()  # as if killed while that chunk was computed
    assert gen.generate(12, seed=0, workers=2, config=config, chunk_store=chunks) == one


#: Parameters under which about 5% of derivations reach their length (5 rejections abandon one):
#: seed 0 gives 9 records, then 100 abandoned in a row, the budget at max_rejections=5.
RARELY_REACHED = {"min_length": 6, "max_length": 9, "length_mean": 7, "max_rejections": 5}
STALLED_AT = "100 derivations in a row (indices 162-261 of seed 0)"


def test_the_budget_of_abandoned_derivations_scales_with_their_cost():
    assert gen.abandon_budget(gen.DEFAULT_CONFIG) == gen.MIN_ABANDONED == 5
    assert gen.abandon_budget(gen.make_config(max_rejections=5)) == 100
    assert gen.abandon_budget(gen.make_config(max_rejections=1000)) == 5


def test_generation_stops_once_the_budget_of_abandoned_derivations_is_spent():
    config = gen.make_config(**RARELY_REACHED)
    outcomes = []
    with pytest.raises(gen.Stalled) as stalled:
        outcomes.extend(gen.iter_outcomes(0, config=config, chunk_size=8, n=24))
    message = str(stalled.value)
    assert isinstance(stalled.value, ValueError) and "\n" not in message
    assert STALLED_AT in message and "9 of 24 derivations made" in message
    assert "max_rejections=5" in message and "round(Normal(7.0, 3.0)) in [6, 9]" in message
    # every outcome before the stall was yielded, the stalling one (index 261) was not
    assert [o["index"] for o in outcomes] == list(range(261))
    assert sum(o["record"] is not None for o in outcomes) == 9
    # the longest chain of derivations 162-261; 6 equations, while their targets are 6 to 9
    assert "their longest chain had 6 equations" in message
    assert max(o["reached"] for o in outcomes[162:]) <= 6
    assert all(1 <= o["reached"] <= 9 for o in outcomes if o["record"] is None)


@pytest.mark.slow
def test_a_stall_is_the_same_with_two_workers_and_when_resumed(tmp_path):
    config = gen.make_config(**RARELY_REACHED)
    with pytest.raises(gen.Stalled) as serial:
        gen.generate(24, seed=0, config=config)
    chunks = stage.ChunkDirectory(tmp_path / "chunks")
    with pytest.raises(gen.Stalled) as parallel:
        gen.generate(24, seed=0, workers=2, config=config, chunk_store=chunks)
    assert str(parallel.value) == str(serial.value)
    with pytest.raises(gen.Stalled) as resumed:
        gen.generate(24, seed=0, workers=2, config=config, chunk_store=chunks)
    assert str(resumed.value) == str(serial.value)
    assert all(len(chunks[c]) == c[1] - c[0] for c in chunks)


def test_a_chunk_ends_at_the_stall_and_is_not_stored():
    # no derivation reaches 50 equations; 10 rejections abandon one, so the budget is 50
    config = gen.make_config(min_length=50, max_length=60, length_mean=55, max_rejections=10)
    assert len(gen.generate_range(0, 0, 64, config)) == 50
    chunks = {}
    with pytest.raises(gen.Stalled, match=r"50 derivations in a row \(indices 0-49 of seed 0\).* 0 of 64 deriv"):
        list(gen.iter_outcomes(0, config=config, chunk_store=chunks, chunk_size=64, n=64))
    assert chunks == {}  # the chunk (0, 64) ended at index 49, so a resumed run computes it again


def test_stage_generates_verifies_draws_and_loads(isolated_data):
    namespace = {"n_derivations": 9, "seed": 0, "workers": 1, "profile": "tiny"}
    run = stage.open_run(namespace)
    result = stage.run(run)
    assert run.complete and run.dir == run.final
    assert result.records == gen.generate(9, seed=0)[0]
    assert not (run.dir / "chunks").exists()
    assert result.verification.n_steps == sum(len(r["srepr_derivation"]) for r in result.records)
    assert not result.verification.failures
    assert set(result.figures) == {"generate_operator_frequencies", "generate_equations_per_derivation",
                                   "generate_latex_length", "generate_rejections"}
    assert all(path.exists() and path.parent.parent == run.final for path in result.figures.values())
    assert (isolated_data / "figures" / "tiny" / "generate_rejections.png").exists()
    assert set(result.derivations["source"]) >= {"ours"} and len(result.derivations) >= 9
    meta = json.loads(run.path("meta.json").read_text())
    assert meta["counts"]["rejections"] == result.rejections and meta["counts"]["derivations"] == 9
    progress = [line for line in run.path("log.txt").read_text().splitlines() if "/9 derivations" in line]
    assert progress and all(" derivations/s, ETA " in line for line in progress[1:]), progress
    assert "9/9 derivations (" in progress[-1] and progress[-1].endswith(", ETA 00:00)")
    again = stage.open_run(namespace)
    assert again.complete and again.dir == run.dir
    loaded = stage.run(again)
    assert loaded.records == result.records and loaded.rejections == result.rejections
    assert loaded.figures == result.figures
    assert loaded.verification == result.verification
    with pytest.raises(ParameterError, match="n_derivatons"):
        stage.open_run({**namespace, "n_derivatons": 3})


def test_stage_resumes_from_the_chunks_of_an_interrupted_run(isolated_data):
    namespace = {"n_derivations": 16, "seed": 3, "profile": "tiny"}
    run = stage.open_run(namespace)
    chunks = stage.ChunkDirectory(run.path("chunks"))
    gen.generate(16, seed=3, chunk_store=chunks)  # what an interrupted run left
    first = sorted(chunks)[0]
    chunks[first] = [{**o, "rejections": {"marker": 1}} for o in chunks[first]]
    result = stage.run(run)
    assert result.rejections["marker"] == len(range(*first))  # the stored chunk was used


def test_cli_writes_a_complete_run_directory(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "derivlib", "generate", "--n", "3", "--seed", "1",
                           "--operator-weights", '{"expand": 0}', "--out", str(out)],
                          capture_output=True, text=True, env={**os.environ, "DERIVLIB_DATA": str(tmp_path / "data")})
    assert done.returncode == 0, done.stderr
    assert "0 failed" in done.stdout and str(out) in done.stdout
    for name in ("params.json", "meta.json", "derivations.jsonl", "rejections.json", "COMPLETE"):
        assert (out / name).exists(), name
    params = json.loads((out / "params.json").read_text())
    assert params["n_derivations"] == 3 and params["operator_weights"]["expand"] == 0
    assert params["operator_weights"]["cos"] == 1  # the operators not named keep the authors' weights
    config = validate(stage.Params, {k: v for k, v in params.items() if k != "profile"}).generator_config()
    lines = [json.loads(line) for line in (out / "derivations.jsonl").read_text().splitlines()]
    assert lines == gen.generate(3, seed=1, config=config)[0]


def test_sympy_is_patched_only_while_a_chunk_is_generated():
    """SymPy's stand-ins are in force while a chunk is generated, never in the caller between
    chunks nor after, and never in next_step; the recursion limit is restored each time."""
    limit = sys.getrecursionlimit()
    seen = []
    original = gen.read_back

    def spy(eq):
        seen.append((sympy_fast.installed() == sympy_fast.STAND_INS, sys.getrecursionlimit() != limit))
        return original(eq)

    gen.read_back = spy
    try:
        outcomes = gen.iter_outcomes(0, chunk_size=2, n=4)
        next(outcomes)
        between = (sympy_fast.installed(), sys.getrecursionlimit())
        list(outcomes)
        inside_chunks = set(seen)
        records, _ = gen.generate(3, seed=1)
        seen.clear()
        step = gen.next_step(records[0]["srepr_derivation"], random.Random(0))
        inside_next_step = set(seen)
    finally:
        gen.read_back = original
    assert between == (sympy_fast.STOCK, limit)
    assert inside_chunks == {(sympy_fast.stock_is_known(), True)}
    assert step is not None and inside_next_step == {(False, True)}
    for call in (lambda: gen.generate(2, seed=2), lambda: gen.generate_one(0, 3),
                 lambda: gen.next_step(records[1]["srepr_derivation"], random.Random(1))):
        call()
        assert sympy_fast.installed() == sympy_fast.STOCK and sys.getrecursionlimit() == limit


def _candidates(n: int) -> list:
    """Every candidate equation that reached the read-back while generating ``n`` derivations."""
    seen = []
    original = gen.read_back

    def spy(eq):
        seen.append(eq)
        return original(eq)

    gen.read_back = spy
    try:
        gen.generate(n, seed=5, workers=1)
    finally:
        gen.read_back = original
    return seen


def test_fast_read_back_and_printing_equal_the_plain_ones():
    x, y = sp.symbols("x y")
    f = sp.Function("f")
    made_up = [sp.Eq(sp.Mul(-1, 2, x, evaluate=False), f(x), evaluate=False),  # non-canonical node
               sp.Eq(sp.exp(x), 2 * sp.exp(x), evaluate=False),  # SymPy decides it False
               sp.Eq(f(x) + 1, f(x), evaluate=False)]
    candidates = _candidates(6) + made_up
    assert len(candidates) > 50
    printer = AuthorsLatexPrinter()
    for eq in candidates:
        plain = from_srepr(sp.srepr(eq))
        fast = gen.read_back(eq)
        assert fast == plain and sp.srepr(fast) == sp.srepr(plain), eq
        if isinstance(plain, sp.Equality):
            assert D.raw_latex(eq) == printer.doprint(eq)
    assert gen.read_back(made_up[0]).lhs == -2 * x
    assert gen.read_back(made_up[1]) == sp.false and gen.read_back(made_up[2]) == sp.false


def test_memo_printers_print_every_sub_expression_as_the_plain_printers():
    candidates = _candidates(8)  # fills the generator's printer memo, as generation does
    plain, fresh = AuthorsLatexPrinter(), D.MemoLatexPrinter()
    x = sp.Symbol("x")
    f = sp.Function("f")
    # keys SymPy tells apart though Python might not; a function as a power's base (exp=)
    tricky = [sp.Integer(1), sp.Float(1.0), sp.Float("1.0", 30), sp.true, sp.Rational(1, 2),
              sp.Float(0.5), f(x) ** 2, sp.sin(x) ** 2, sp.Derivative(f(x) ** 2, x)]
    nodes = list(dict.fromkeys(node for eq in candidates for node in sp.preorder_traversal(eq)))
    assert len(nodes) > 250
    for node in nodes + tricky:
        expected = plain.doprint(node)
        assert D.raw_latex(node) == expected, node
        assert fresh.doprint(node) == expected, node
    assert fresh.doprint(sp.Float(1.0)) != fresh.doprint(sp.Integer(1))
    # the srepr printer too, with symbols that are equal but were made with other assumptions
    fresh_srepr = D.MemoReprPrinter()
    tricky += [sp.Symbol("a"), sp.Symbol("a", commutative=True), sp.Float("0.5", 30), sp.Dummy("d")]
    for node in nodes + tricky:
        expected = to_srepr(node)
        assert D.fast_srepr(node) == expected, node
        assert fresh_srepr.doprint(node) == expected, node


def test_runaway_recursion_is_a_rejection_whatever_the_callers_stack():
    """Derivation 6500 of seed 0 meets candidates on which SymPy's ``subs`` recurses without end
    (they crashed a 30,000-derivation run): each is counted as a rejection, and the record is the
    same when generated from a much deeper stack (a joblib worker's, a notebook's)."""
    def at_depth(extra: int):
        if extra:
            return at_depth(extra - 1)
        rejections = Counter()
        return gen.generate_one(0, 6500, rejections=rejections), rejections

    limit = sys.getrecursionlimit()
    record, rejections = at_depth(0)
    assert record is not None and rejections["sympy_error:RecursionError"] > 0
    assert at_depth(400) == (record, rejections)
    assert sys.getrecursionlimit() == limit


def test_power_of_the_variable_is_not_given_to_risch():
    """(log(u) - log(u)**u)**u sent Risch running for minutes and 10 GB (derivation 8991 of
    seed 0): an integrand with the variable in a power's base and exponent stays unevaluated."""
    u = sp.Symbol("u")
    integral = sp.Integral((sp.log(u) - sp.log(u) ** u) ** u, u)
    assert rules.has_variable_power_of_variable(integral)
    assert rules.integrate_bounded(integral) is integral
    assert not rules.has_variable_power_of_variable(sp.Integral(u ** 2 * sp.exp(u), u))
    assert gen.generate_one(0, 8991) is not None
