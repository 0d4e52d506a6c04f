"""Set builder: deduplication, hash split, matched perturbed subsets, no test text in training,
reproducible files, the authors' combined layout, HF datasets loading; the testsets stage and the
build-sets command."""
from __future__ import annotations

import json
import random

import pytest

from derivlib import __main__ as cli
from derivlib import perturb, prompts, sets
from derivlib import derivation as D
from derivlib.base.files import atomic_write_json, read_jsonl, write_jsonl
from derivlib.base.params import ParameterError, validate
from derivlib.base.vocabulary import PERTURBATIONS, SET_FILES, SETS
from derivlib.presentation import display
from derivlib.readers import runs
from derivlib.stages import rundir, testsets

import handmade

SMALL = dict(n_train=40, dev_fraction=0.1, n_static=12, n_vr=10, n_ee=12, n_ag=6, n_sr=5)


def _derivations(n_eval=40, n_plain=30):
    return handmade.records(n_eval) + handmade.records(n_plain, handmade.no_evaluation_chain, prefix="p")


def _build(records, verify=False, **overrides):
    params = sets.SetsConfig(**{**SMALL, "verify": verify, **overrides})
    return sets.build_sets(records, params, log=lambda _: None)


def test_sizes_matched_subsets_and_prompts():
    built = _build(_derivations())
    sizes = {name: len(items) for name, items in built.items.items()}
    assert sizes == {"train": 36, "dev": 4, "static": 12, "VR": 10, "EE": 12, "AG": 6, "SR": 5}
    static_ids = [i["id"] for i in built.items["static"]]
    for kind in PERTURBATIONS:
        ids = [i["id"] for i in built.items[kind]]
        assert ids == static_ids[:len(ids)], kind  # the first static items, same ids, same order
    for item in built.items["static"]:
        assert item["intermediates"]  # every test prompt has something for SR to remove
    for item in built.items["SR"]:
        assert not prompts.parse_prompt(item["prompt"]).intermediates
    train_counts = {len(i["intermediates"]) for i in built.items["train"]}
    assert 0 in train_counts and 1 in train_counts


def test_no_test_prompt_or_derivation_occurs_in_train():
    records = _derivations()
    # Add every derivation's EE form as a separate derivation: whichever lands in training while
    # its twin is a test item collides with the EE test set and must be removed.
    twins = [D.steps_to_record(perturb.expression_exchange(r["srepr_derivation"]), id=r["id"] + "-ee")
             for r in records]
    built = _build(records + twins, n_train=200)
    assert built.counts["train_leaks_removed"] > 0
    test_texts = {i[k] for name in SETS for i in built.items[name] for k in ("prompt", "derivation")}
    for name in ("train", "dev"):
        for item in built.items[name]:
            assert item["prompt"] not in test_texts and item["derivation"] not in test_texts
    sets.check_no_leaks(built.items)
    leaky = {**built.items, "train": built.items["train"] + [built.items["EE"][0]]}
    with pytest.raises(AssertionError, match="occurs in train"):
        sets.check_no_leaks(leaky)


def test_duplicates_are_removed_by_content():
    records = _derivations(20, 0)
    copies = [{**r, "id": r["id"] + "-copy"} for r in records[:5]]
    built = _build(records + copies, n_train=100)
    assert built.counts["duplicates_removed"] == 5
    keys = [sets.content_key(i["srepr_derivation"]) for name in ("train", "dev", "static")
            for i in built.items[name]]
    assert len(keys) == len(set(keys))


def test_split_depends_on_content_and_seed_not_on_file_order(tmp_path):
    records = _derivations()
    shuffled = list(records)
    random.Random(5).shuffle(shuffled)
    a, b = _build(records), _build(shuffled)
    sets.write_sets(tmp_path / "a", a)
    sets.write_sets(tmp_path / "b", b)
    for name in (*SET_FILES, "test_combined"):
        assert (tmp_path / "a" / f"{name}.jsonl").read_bytes() == (tmp_path / "b" / f"{name}.jsonl").read_bytes()
    other = _build(records, seed=1)
    assert [i["id"] for i in other.items["static"]] != [i["id"] for i in a.items["static"]]


def test_workers_do_not_change_the_files(tmp_path):
    records = _derivations(30, 10)
    sets.write_sets(tmp_path / "one", _build(records, workers=1))
    sets.write_sets(tmp_path / "two", _build(records, workers=2))
    for name in SET_FILES:
        assert (tmp_path / "one" / f"{name}.jsonl").read_bytes() == (tmp_path / "two" / f"{name}.jsonl").read_bytes()


def test_files_load_with_hf_datasets_and_combined_has_the_authors_layout(tmp_path):
    import datasets  # heavy (pyarrow), needed by this test only

    built = _build(_derivations())
    paths = sets.write_sets(tmp_path, built)
    for name in SET_FILES:
        ds = datasets.load_dataset("json", data_files=str(paths[name]), split="train",
                                   cache_dir=str(tmp_path / "hf"))
        assert len(ds) == len(built.items[name])
        assert {"id", "prompt", "derivation", "srepr_derivation"} <= set(ds.column_names)
    combined = read_jsonl(paths["combined"])
    assert [c["id"] for c in combined] == [i["id"] for i in built.items["static"]]
    first = combined[0]
    for name in SETS:
        prefix = "" if name == "static" else f"{name} "
        assert {prefix + "prompt", prefix + "derivation", prefix + "srepr_derivation"} <= set(first)
    assert "SR prompt" not in combined[-1]  # only the first n_sr static items have an SR version
    ds = datasets.load_dataset("json", data_files=str(paths["combined"]), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert "VR prompt" in ds.column_names


def test_perturbed_sets_pass_the_verifier():
    built = _build(_derivations(16, 4), verify=True, n_train=4)
    for kind in PERTURBATIONS:
        assert built.items[kind]
        assert all(perturb.passes_verifier(i["srepr_derivation"]) for i in built.items[kind]), kind


def test_malformed_derivation_line_is_an_error_naming_it(tmp_path):
    path = tmp_path / "derivations.jsonl"
    good = json.dumps(handmade.records(1)[0])
    path.write_text(good + "\n" + good[:40] + "\n")
    with pytest.raises(ValueError, match=r"derivations.jsonl: line 2 is not valid JSON"):
        runs.read_derivations(path)
    path.write_text(good + "\n" + json.dumps({"id": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"derivations.jsonl: line 2: lacks srepr_derivation"):
        runs.read_derivations(path)
    with pytest.raises(FileNotFoundError):
        runs.read_derivations(tmp_path / "missing.jsonl")


def test_parameters_are_checked():
    with pytest.raises(ParameterError, match="'n_sr'.*exceeds n_static"):
        sets.SetsConfig(n_static=3, n_vr=3, n_ee=3, n_ag=3, n_sr=5).check()
    with pytest.raises(ParameterError, match="'n_sr'.*exceeds n_static"):
        validate(testsets.Params, {"n_static": 3, "n_vr": 3, "n_ee": 3, "n_ag": 3, "n_sr": 5})
    with pytest.raises(ParameterError, match="intermediate_policy"):
        validate(testsets.Params, {"intermediate_policy": "some"})
    with pytest.raises(ParameterError, match="unknown parameter"):
        validate(testsets.Params, {"n_statik": 3})
    # the stage's parameters are the builder's, plus where to read and how to label
    config = validate(testsets.Params, {"seed": 4, "n_train": 9, "workers": 2}).sets_config()
    assert config == sets.SetsConfig(**{**SMALL, "dev_fraction": 0.05, "n_static": 200, "n_vr": 190,
                                        "n_ee": 200, "n_ag": 200, "n_sr": 65, "seed": 4, "n_train": 9,
                                        "workers": 2})


def test_random_policy_builds_test_prompts_with_intermediates():
    built = _build(_derivations(), intermediate_policy="random")
    assert all(item["intermediates"] for item in built.items["static"])
    assert any(not item["intermediates"] for item in built.items["train"])


def test_cli_build_sets(isolated_data, capsys):
    derivations = isolated_data / "derivations.jsonl"
    write_jsonl(derivations, _derivations())
    out = isolated_data / "sets"
    args = ["build-sets", "--derivations", str(derivations), "--out", str(out), "--seed", "3",
            "--n-train", "30", "--n-static", "8", "--n-vr", "8", "--n-ee", "8", "--n-ag", "4",
            "--n-sr", "8", "--verify", "false"]
    assert cli.main(args) == 0
    assert "static.jsonl (8)" in capsys.readouterr().out
    loaded = runs.load_sets(out)
    assert len(loaded["static"]) == 8 and len(loaded["train"]) + len(loaded["dev"]) == 30
    assert json.loads((out / "params.json").read_text())["seed"] == 3
    # --out is a complete run directory: `train --sets` / `predict --sets` take it as it is
    assert rundir.resolve_run_dir(out, "sets") == out
    assert (out / "figures" / "testsets_statistics.png").exists()
    key = json.loads((out / "meta.json").read_text())["key"]
    assert not (isolated_data / "figures").exists()  # not published under a profile name
    assert cli.main(args + ["--n-sr", "9"]) == 2
    assert "exceeds n_static" in capsys.readouterr().err
    assert (out / rundir.COMPLETE).exists()  # a refused call leaves the earlier run as it was
    assert cli.main(args) == 0  # the same command again loads the complete run
    assert json.loads((out / "meta.json").read_text())["key"] == key
    write_jsonl(derivations, _derivations()[1:])
    assert cli.main(args) == 2  # another input, same --out: refused, the run is kept
    assert "holds a complete testsets run" in capsys.readouterr().err
    assert cli.main(args[:3] + ["--out", str(out.with_name("sets2"))] + args[5:]) == 0
    assert json.loads((out.with_name("sets2") / "meta.json").read_text())["key"] != key  # the input is in the key


def test_cli_build_sets_refuses_an_out_that_holds_its_input(isolated_data, capsys):
    directory = isolated_data / "mine"
    write_jsonl(directory / "derivations.jsonl", _derivations(8, 0))
    assert cli.main(["build-sets", "--derivations", str(directory / "derivations.jsonl"), "--out", str(directory),
                     "--n-static", "2", "--n-vr", "2", "--n-ee", "2", "--n-ag", "2", "--n-sr", "2"]) == 2
    assert "holds the input" in capsys.readouterr().err
    assert sorted(p.name for p in directory.iterdir()) == ["derivations.jsonl"]


def _fake_generate_run(name="fake"):
    upstream = rundir.data_root() / "generate" / name
    write_jsonl(upstream / "derivations.jsonl", _derivations())
    atomic_write_json(upstream / "meta.json", {"key": name})
    (upstream / rundir.COMPLETE).write_text("done\n")
    return upstream


def test_stage_builds_into_the_run_directory_and_reloads(isolated_data):
    _fake_generate_run()
    namespace = {**SMALL, "derivations": "generate/fake", "verify": False, "profile": "tiny"}
    run = testsets.open_run(namespace)
    result = testsets.run(run)
    assert run.complete and run.dir == run.final
    assert (run.dir / "static.jsonl").exists() and (run.dir / "test_combined.jsonl").exists()
    assert result.figures["testsets_statistics"].exists()
    assert (isolated_data / "figures" / "tiny" / "testsets_statistics.png").exists()  # published
    assert (rundir.data_root() / "testsets" / "tiny").resolve() == run.dir.resolve()
    assert result.counts["sizes"]["static"] == 12 and result.counts_table.loc["static", "built"] == 12
    table = result.statistics
    assert table.loc["static", "items"] == 12 and table.loc["SR", "0 intermediates (%)"] == 100
    again = testsets.open_run(namespace)
    assert again.final == run.final and again.complete
    loaded = testsets.run(again)
    assert loaded.items == {k: read_jsonl(run.dir / f"{k}.jsonl") for k in SET_FILES}
    assert {k: len(v) for k, v in result.items.items()} == {k: len(v) for k, v in loaded.items.items()}
    assert loaded.counts == result.counts and loaded.figures == result.figures
    assert "$" in display.set_items(loaded.items).data


def test_stage_needs_a_complete_upstream_run(isolated_data):
    with pytest.raises(ParameterError, match="'derivations'.*not a complete run directory"):
        testsets.open_run({**SMALL, "derivations": "generate/missing"})


@pytest.mark.paper_results
def test_sets_from_released_derivations(flan_results, tmp_path):
    """The released static, EE and AG derivations as one derivations file: every EE derivation
    collides with a test item's EE form (or its static twin in test), and none reaches train."""
    records = []
    for index, item in enumerate(json.loads(flan_results.read_text())):
        for key in ("srepr_derivation", "EE srepr_derivation", "AG srepr_derivation"):
            steps = D.Derivation.from_record(item, key).steps
            records.append(D.steps_to_record(steps, id=f"paper-{index:03d}-{key.split()[0]}"))
    built = _build(records, n_train=200, n_static=60, n_vr=50, n_ee=60, n_ag=10, n_sr=30)
    assert built.counts["train_leaks_removed"] > 0
    sets.check_no_leaks(built.items)
    # static items that are released static derivations get the released prompt's intermediates
    released = {f"paper-{i:03d}-srepr_derivation": item
                for i, item in enumerate(json.loads(flan_results.read_text()))}
    ours = [i for i in built.items["static"] if i["id"] in released]
    assert ours
    for item in ours:
        assert item["intermediates"] == prompts.locate_intermediates(released[item["id"]])


def test_dev_is_not_biased_towards_prompts_without_intermediates():
    """Dev is drawn by its own hash: the pool's head (derivations passed over while static was
    filled, all without intermediates) must not become the dev set. Here that head is 8 items
    long, as is dev."""
    built = _build(_derivations(n_eval=40, n_plain=60), n_train=100, dev_fraction=0.09)
    train, dev = built.items["train"], built.items["dev"]
    assert len(dev) == 8 and not {i["id"] for i in dev} & {i["id"] for i in train}
    assert any(i["intermediates"] for i in dev), "dev holds only prompts without intermediates"
