"""derivlib.metrics against the plain library calls and the authors' released numbers."""
from __future__ import annotations

import json
import math
import os
import socket
from collections import Counter

import nltk.translate.gleu_score as nltk_gleu
import numpy as np
import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

from derivlib import metrics, paper

PAIRS = [
    # (name, prediction, reference)
    ("empty prediction", "", r"\eta{(a)} = e^{a} and \frac{d}{d a} \eta{(a)} = e^{a}"),
    ("empty both", "", ""),
    ("identical", r"\eta{(a)} = e^{a} and \frac{d}{d a} \eta{(a)} = e^{a}",
     r"\eta{(a)} = e^{a} and \frac{d}{d a} \eta{(a)} = e^{a}"),
    ("operator only", "= + - ^ { } \\", "= + - ^ { } \\"),
    ("operator only vs equation", "= + - ^ { }", r"x = y + z"),
    ("one equation", r"\eta{(a)} = e^{a}",
     r"\eta{(a)} = e^{a} and \frac{d}{d a} \eta{(a)} = e^{a} and \eta{(a)} \frac{d^{2}}{d a^{2}} \eta{(a)} = \eta^{2}{(a)}"),
    ("shorter than 4 tokens", "x = y", "x = y + z"),
    ("longer prediction", "x = y + z and y = z and z = w", "x = y + z"),
    ("t5 spacing", r"\ frac { d } { d a } \ eta { (a) } = e ^ { a }", r"\frac{d}{d a} \eta{(a)} = e^{a}"),
]


def library_scores(prediction: str, reference: str) -> dict:
    """The plain library calls, one pair at a time (what derivlib must equal)."""
    rouge = rouge_scorer.RougeScorer(["rouge2"], use_stemmer=False).score(reference, prediction)
    bleu = sacrebleu.BLEU(tokenize="13a", smooth_method="none", effective_order=False)
    tokenizer = sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a()
    gleu = nltk_gleu.corpus_gleu([[tokenizer(reference).split()]], [tokenizer(prediction).split()],
                                 min_len=1, max_len=4)
    return {"rouge": rouge["rouge2"].fmeasure,
            "bleu": bleu.corpus_score([prediction], [[reference]]).score / 100.0,
            "gleu": gleu}


def nmt_compute_bleu(reference: list[str], translation: list[str], max_order: int = 4) -> float:
    """tensorflow/nmt compute_bleu for one pair, as HF evaluate's 'bleu' runs it (the authors').

    Written out here only as an independent check that sacrebleu/100 is the same algorithm."""
    from collections import Counter

    def grams(tokens):
        return Counter(tuple(tokens[i:i + n]) for n in range(1, max_order + 1)
                       for i in range(len(tokens) - n + 1))
    overlap = grams(reference) & grams(translation)
    matches = [0] * max_order
    possible = [max(0, len(translation) - n) for n in range(max_order)]
    for ngram, count in overlap.items():
        matches[len(ngram) - 1] += count
    precisions = [matches[i] / possible[i] if possible[i] > 0 else 0.0 for i in range(max_order)]
    geo_mean = math.exp(sum(math.log(p) for p in precisions) / max_order) if min(precisions) > 0 else 0
    ratio = len(translation) / len(reference)
    bp = 1.0 if ratio > 1.0 else math.exp(1 - 1.0 / ratio)
    return geo_mean * bp


@pytest.mark.parametrize("name,prediction,reference", PAIRS, ids=[p[0] for p in PAIRS])
def test_equals_plain_library_calls(name, prediction, reference):
    ours = metrics.score_pair(prediction, reference, metrics.PAPER_METRICS)
    expected = library_scores(prediction, reference)
    for metric in metrics.PAPER_METRICS:
        assert ours[metric] == pytest.approx(expected[metric], abs=1e-12), metric


# Pinned values, computed once with the plain library calls above (rouge-score 0.1.2,
# sacrebleu 2.6.0, nltk 3.10.4).
PINNED = {
    "empty prediction": {"rouge": 0.0, "bleu": 0.0, "gleu": 0.0},
    "empty both": {"rouge": 0.0, "bleu": 0.0, "gleu": 0.0},
    # sacrebleu multiplies by 100 and back: 1 + 4e-16, not 1.0.
    "identical": {"rouge": 1.0, "bleu": 1.0000000000000004, "gleu": 1.0},
    # ROUGE's tokenizer drops every operator: no tokens, F-measure 0; 13a keeps them.
    "operator only": {"rouge": 0.0, "bleu": 1.0000000000000004, "gleu": 1.0},
    "operator only vs equation": {"rouge": 0.0, "bleu": 0.0, "gleu": 0.1111111111111111},
    "one equation": {"rouge": 0.20689655172413793, "bleu": 0.005777142164111214,
                     "gleu": 0.1464968152866242},
    # Fewer than 4 tokens: no 4-grams, BLEU 0 without smoothing.
    "shorter than 4 tokens": {"rouge": 0.6666666666666666, "bleu": 0.0, "gleu": 0.42857142857142855},
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_edge_cases(name):
    prediction, reference = next((p, r) for n, p, r in PAIRS if n == name)
    ours = metrics.score_pair(prediction, reference, metrics.PAPER_METRICS)
    for metric, value in PINNED[name].items():
        assert ours[metric] == pytest.approx(value, abs=1e-12), metric


@pytest.mark.parametrize("name,prediction,reference",
                         [p for p in PAIRS if p[1] and p[2]], ids=[p[0] for p in PAIRS if p[1] and p[2]])
def test_bleu_is_nmt_compute_bleu(name, prediction, reference):
    tokenizer = sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a()
    expected = nmt_compute_bleu(tokenizer(reference).split(), tokenizer(prediction).split())
    assert metrics.score_pair(prediction, reference, ["bleu"])["bleu"] == pytest.approx(expected, abs=1e-12)


def test_empty_prediction_scores_zero_where_nmt_would_divide_by_zero():
    with pytest.raises(ZeroDivisionError):
        nmt_compute_bleu(["x", "=", "y"], [])
    assert metrics.score_pair("", "x = y")["bleu"] == 0.0


latex_text = st.lists(st.sampled_from([r"\frac", "{", "}", "x", "y", "=", "+", "^", "2", "and", r"\eta", "(a)", " "]),
                      max_size=40).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(latex_text, latex_text)
def test_cached_batch_equals_library_on_random_strings(prediction, reference):
    ours = metrics.score_pairs([prediction, reference], [reference, prediction])
    for column, (p, r) in enumerate([(prediction, reference), (reference, prediction)]):
        expected = library_scores(p, r)
        for metric in metrics.PAPER_METRICS:
            assert ours[metric][column] == pytest.approx(expected[metric], abs=1e-12)


def test_latex_variants_keep_operators_and_rejoin_t5_commands():
    assert metrics.latex_tokens(r"\ frac { d } { d a } e ^ { a }") == metrics.latex_tokens(r"\frac{d}{da} e^{a}")
    assert metrics.latex_tokens(r"\frac{x}{2} = \mathbf{E}") == [
        r"\frac", "{", "x", "}", "{", "2", "}", "=", r"\mathbf", "{", "E", "}"]
    # Paper ROUGE cannot tell x = y + z from x - y * z; ours can.
    paper_rouge = metrics.score_pair("x - y * z", "x = y + z")
    assert paper_rouge["rouge"] == 1.0 and paper_rouge["rouge2_latex"] < 1.0
    identical = metrics.score_pair(r"\frac{a}{b} = c", r"\frac{a}{b} = c")
    assert all(identical[m] == pytest.approx(1.0, abs=1e-12) for m in metrics.LATEX_METRICS)


def test_latex_variants_use_the_same_library_formulas():
    prediction, reference = r"\frac{d}{d a} \eta{(a)} = e^{a}", r"\frac{d}{d a} \eta{(a)} = a e^{a}"
    p, r = metrics.latex_tokens(prediction), metrics.latex_tokens(reference)
    ours = metrics.score_pair(prediction, reference)
    rouge = rouge_scorer._score_ngrams(rouge_scorer._create_ngrams(r, 2), rouge_scorer._create_ngrams(p, 2))
    assert ours["rouge2_latex"] == rouge.fmeasure
    bleu = sacrebleu.BLEU(tokenize="none", smooth_method="none").corpus_score([" ".join(p)], [[" ".join(r)]])
    assert ours["bleu_latex"] == pytest.approx(bleu.score / 100, abs=1e-12)
    assert ours["gleu_latex"] == pytest.approx(nltk_gleu.corpus_gleu([[r]], [p]), abs=1e-12)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown metric.*'rogue'"):
        metrics.score_pairs(["a"], ["a"], metrics=["rogue"])
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        metrics.score_pairs(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="prediction 1 is NoneType"):
        metrics.score_pairs(["a", None], ["a", "b"])


def test_bleurt_without_checkpoint_says_why_and_downloads_nothing(tmp_path):
    assert "no local checkpoint" in metrics.bleurt_unavailable(None)
    assert "does not exist" in metrics.bleurt_unavailable(tmp_path / "missing")
    with pytest.raises(ValueError, match="BLEURT left out"):
        metrics.score_pairs(["a"], ["a"], metrics=["rouge", "bleurt"])


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during scoring")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    import nltk
    monkeypatch.setattr(nltk, "download", refuse)


def test_scoring_never_touches_the_network(no_network, flan_results):
    metrics.clear_cache()
    records = paper.to_predictions(flan_results)
    scores = metrics.score_pairs([r["prediction"] for r in records], [r["reference"] for r in records],
                                 metrics.PAPER_METRICS + metrics.LATEX_METRICS)
    assert all(np.isfinite(v).all() and len(v) == len(records) for v in scores.values())
    assert "no local checkpoint" in metrics.bleurt_unavailable(None)


def test_static_scores_reproduce_released_values(flan_results, gpt4_results):
    for path in (flan_results, gpt4_results):
        items = json.loads(path.read_text())
        model = paper.model_name(path)
        scores = metrics.score_pairs([i[f"static_{model}"] for i in items], [i["derivation"] for i in items])
        for metric in metrics.PAPER_METRICS:
            stored = np.array([i[f"static_{metric}"] for i in items])
            assert np.abs(scores[metric] - stored).max() <= 1e-9, (model, metric)


text_13a = st.lists(st.sampled_from(list("ab1 2.,-\n&;<>{}\\^_=+()[]|/:?!\"'") +
                                    ["&amp;", "&quot;", "<skipped>", "-\n", "é", "\t"]),
                    max_size=40).map("".join)


@settings(max_examples=300, deadline=None)
@given(text_13a)
def test_fast_13a_tokens_equal_sacrebleu(text):
    expected = sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a()(text).split()
    assert metrics.tokens_13a(text) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "=", "{", "}"]), max_size=12))
def test_ngram_counts_equal_sacrebleu(tokens):
    from sacrebleu.metrics.helpers import extract_all_word_ngrams
    counts, length = extract_all_word_ngrams(" ".join(tokens), 1, 4)
    per_order = metrics.ngram_counts(tokens)
    assert sum(per_order, Counter()) == counts and len(tokens) == length
    assert all(len(ngram) == n for n, c in enumerate(per_order, 1) for ngram in c)
