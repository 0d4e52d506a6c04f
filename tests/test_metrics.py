"""derivlib.metrics against the plain library calls and the authors' released numbers."""
from __future__ import annotations

import json
import math
import socket
from collections import Counter

import nltk
import nltk.translate.gleu_score as nltk_gleu
import numpy as np
import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st
from nltk.util import everygrams, ngrams
from rouge_score import rouge_scorer
from rouge_score import tokenize as rouge_tokenize
from rouge_score.tokenizers import Tokenizer
from sacrebleu.metrics.helpers import extract_all_word_ngrams

from derivlib import metrics
from derivlib.readers import released

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


class LatexTokenizer(Tokenizer):
    """derivlib's LaTeX tokens, handed to rouge-score's own scorer."""

    def tokenize(self, text):
        return metrics.latex_tokens(text)


def library_rouge2_latex(prediction: str, reference: str) -> float:
    scorer = rouge_scorer.RougeScorer(["rouge2"], tokenizer=LatexTokenizer())
    return scorer.score(reference, prediction)["rouge2"].fmeasure


def test_latex_variants_use_the_same_library_formulas():
    prediction, reference = r"\frac{d}{d a} \eta{(a)} = e^{a}", r"\frac{d}{d a} \eta{(a)} = a e^{a}"
    p, r = metrics.latex_tokens(prediction), metrics.latex_tokens(reference)
    ours = metrics.score_pair(prediction, reference)
    assert ours["rouge2_latex"] == library_rouge2_latex(prediction, reference)
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
    monkeypatch.setattr(nltk, "download", refuse)


def test_scoring_never_touches_the_network(no_network, flan_results):
    metrics.clear_cache()
    records = released.to_predictions(flan_results)
    scores = metrics.score_pairs([r["prediction"] for r in records], [r["reference"] for r in records],
                                 metrics.PAPER_METRICS + metrics.LATEX_METRICS)
    assert all(np.isfinite(v).all() and len(v) == len(records) for v in scores.values())
    assert "no local checkpoint" in metrics.bleurt_unavailable(None)


def test_static_scores_reproduce_released_values(flan_results, gpt4_results):
    for path in (flan_results, gpt4_results):
        items = json.loads(path.read_text())
        model = released.model_name(path)
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
    counts, length = extract_all_word_ngrams(" ".join(tokens), 1, 4)
    per_order = metrics.ngram_counts(tokens)
    assert sum(per_order, Counter()) == counts and len(tokens) == length
    assert all(len(ngram) == n for n, c in enumerate(per_order, 1) for ngram in c)


# --------------------------------------------------------------------------------------------
# The hand-written fast pieces, each against the library function it replaces.

def released_string_pairs(flan_results, gpt4_results) -> list[tuple[str, str]]:
    """Every distinct pair the scoring stage scores: prediction vs reference, and the
    perturbation pairs (perturbed vs static reference and prediction)."""
    pairs = set()
    for path in (flan_results, gpt4_results):
        records = released.to_predictions(path)
        by_key = {(r["set"], r["id"]): r for r in records}
        for (set_name, item_id), record in by_key.items():
            pairs.add((record["prediction"], record["reference"]))
            if set_name != "static":
                static = by_key[("static", item_id)]
                pairs.add((record["reference"], static["reference"]))
                pairs.add((record["prediction"], static["prediction"]))
    return sorted(pairs)


def test_every_released_pair_equals_plain_library_calls(flan_results, gpt4_results):
    pairs = released_string_pairs(flan_results, gpt4_results)
    assert len(pairs) > 1000
    metrics.clear_cache()
    ours = metrics.score_pairs([p for p, _ in pairs], [r for _, r in pairs])
    for index, (prediction, reference) in enumerate(pairs):
        expected = library_scores(prediction, reference)
        for metric in metrics.PAPER_METRICS:
            assert ours[metric][index] == pytest.approx(expected[metric], abs=1e-12), (index, metric)


def test_released_strings_tokenize_as_the_libraries_do(flan_results, gpt4_results):
    texts = sorted({text for pair in released_string_pairs(flan_results, gpt4_results) for text in pair})
    sacrebleu_13a = sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a()
    for text in texts:
        assert metrics.tokens_13a(text) == sacrebleu_13a(text).split()
        assert metrics.rouge_tokens(text) == rouge_tokenize.tokenize(text, None)


# Long LaTeX-like strings, any unicode text, and strings dense in what the 13a rules look at
# (periods, commas, dashes next to digits).
long_latex_text = st.lists(st.sampled_from([r"\frac", "{", "}", "x", "y", "=", "+", "^", "2", "and",
                                            r"\eta", "(a)", r"\,", "dx", "-", "1.5", ",", " "]),
                           max_size=400).map(" ".join)
dense_13a_text = st.lists(st.sampled_from(list(".,-0123456789a {}\\&\n") + ["&amp;", "<skipped>", "é"]),
                          max_size=60).map("".join)
any_text = st.one_of(latex_text, long_latex_text, dense_13a_text, st.text(max_size=200))


@settings(max_examples=300, deadline=None)
@given(st.one_of(dense_13a_text, st.text(max_size=200)))
def test_fast_13a_tokens_equal_sacrebleu_on_any_text(text):
    assert metrics.tokens_13a(text) == sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a()(text).split()


@settings(max_examples=300, deadline=None)
@given(st.one_of(latex_text, st.text(max_size=200)))
def test_rouge_tokens_and_bigrams_equal_rouge_score(text):
    tokens = rouge_tokenize.tokenize(text, None)
    assert metrics.rouge_tokens(text) == tokens
    assert metrics.rouge_bigrams(tokens) == Counter(ngrams(tokens, 2))


def sacrebleu_statistics(hyp_tokens, ref_tokens):
    """sacrebleu's own match counts and totals for pre-tokenized text (tokens hold no spaces)."""
    bleu = sacrebleu.BLEU(tokenize="none", smooth_method="none", effective_order=False)
    score = bleu.corpus_score([" ".join(hyp_tokens)], [[" ".join(ref_tokens)]])
    return score.counts, score.totals


def nltk_gleu_true_positives(hyp_tokens, ref_tokens):
    return sum((Counter(everygrams(ref_tokens, 1, 4)) & Counter(everygrams(hyp_tokens, 1, 4))).values())


token_lists = st.lists(st.sampled_from(["a", "b", "c", "=", "{", "}", "é", "\\frac"]), max_size=60)


@settings(max_examples=300, deadline=None)
@given(token_lists, token_lists)
def test_clipped_matches_equal_sacrebleu_and_nltk(hyp, ref):
    matches = metrics.clipped_matches(hyp, ref)
    assert matches == list(sacrebleu_statistics(hyp, ref)[0])
    assert sum(matches) == nltk_gleu_true_positives(hyp, ref)


def test_clipped_matches_with_a_vocabulary_too_large_for_int64_codes(monkeypatch):
    # Over ~46,000 distinct tokens, base**4 overflows int64: the Counter path takes over.
    used = []
    counter_matches = metrics.counter_matches
    monkeypatch.setattr(metrics, "counter_matches", lambda h, r: used.append(1) or counter_matches(h, r))
    rng = np.random.default_rng(0)
    ref = [f"t{i}" for i in range(47_000)] + ["t1", "t2", "t3", "t4"] * 3
    hyp = [ref[i] for i in rng.integers(0, len(ref), 20_000)] + ["t1", "t2", "t3", "t4"]
    matches = metrics.clipped_matches(hyp, ref)
    assert used == [1]
    assert matches == list(sacrebleu_statistics(hyp, ref)[0])
    assert sum(matches) == nltk_gleu_true_positives(hyp, ref)


@settings(max_examples=200, deadline=None)
@given(any_text, any_text)
def test_fresh_strings_equal_library_calls(prediction, reference):
    # Cold caches: every string is tokenized and counted afresh, as for a new model's outputs.
    metrics.clear_cache()
    ours = metrics.score_pair(prediction, reference, metrics.PAPER_METRICS)
    expected = library_scores(prediction, reference)
    for metric in metrics.PAPER_METRICS:
        assert ours[metric] == pytest.approx(expected[metric], abs=1e-12), metric


@settings(max_examples=150, deadline=None)
@given(long_latex_text, long_latex_text)
def test_latex_variants_equal_library_formulas_on_random_strings(prediction, reference):
    p, r = metrics.latex_tokens(prediction), metrics.latex_tokens(reference)
    ours = metrics.score_pair(prediction, reference, metrics.LATEX_METRICS)
    assert ours["rouge2_latex"] == library_rouge2_latex(prediction, reference)
    bleu = sacrebleu.BLEU(tokenize="none", smooth_method="none", effective_order=False)
    expected_bleu = bleu.corpus_score([" ".join(p)], [[" ".join(r)]]).score / 100
    assert ours["bleu_latex"] == pytest.approx(expected_bleu, abs=1e-12)
    assert ours["gleu_latex"] == pytest.approx(nltk_gleu.corpus_gleu([[r]], [p]), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(token_lists, token_lists)
def test_counter_matches_equal_clipped_matches(hyp, ref):
    assert metrics.counter_matches(hyp, ref) == metrics.clipped_matches(hyp, ref)
