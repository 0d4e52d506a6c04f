"""Text metrics, computed exactly as the authors' released numbers were (PAPER.md §5), and fast.

Paper-exact metrics (names as in the authors' files):

- ``rouge``: rouge-score's ``rouge2`` F-measure, its default tokenizer (lower-cases and drops
  every non-alphanumeric character, so ``\\ { } ^ = +`` vanish), no stemming, no bootstrap.
- ``bleu``: BLEU of the tensorflow/nmt ``compute_bleu`` algorithm (what HF ``evaluate``'s
  ``bleu`` runs) on 13a tokens, max order 4, no smoothing, brevity penalty. It equals sacrebleu's
  BLEU with ``smooth_method="none"``, ``effective_order=False``, divided by 100; that is what we
  call. One difference: nmt raises ``ZeroDivisionError`` on an empty prediction or reference,
  sacrebleu (and therefore derivlib) scores it 0.
- ``gleu``: NLTK ``corpus_gleu`` over one pair, n-grams 1-4, on 13a tokens.
- ``bleurt``: only through a local checkpoint and an installed ``bleurt`` package, never a
  download (see :func:`bleurt_scorer`).

Ours, beside them (the default ROUGE tokenizer scores variable names only):

- ``rouge2_latex``, ``bleu_latex``, ``gleu_latex``: the same formulas on :func:`latex_tokens`,
  which keeps commands (``\\frac``), braces, operators and every letter and digit.

Speed. Calling the libraries per pair re-tokenizes and re-counts n-grams of every string with
Python loops (under 1,000 pairs/s on one core). Here each distinct string is tokenized once
(cached), the n-gram matches of a pair are counted in numpy, and the counts go to the libraries'
own statistic functions: rouge-score's ``_score_ngrams`` and sacrebleu's ``BLEU.compute_bleu``.
Strings never seen before (a new model's outputs) score at about 3,000 pairs/s on one core
(``benchmarks/score.py``). The pieces written here, each for speed, each naming the library
function it mirrors and tested equal to it on the released pairs and on random text
(``tests/test_metrics.py``): the ROUGE tokenizer as one ``findall`` (:func:`rouge_tokens`) and its
bigram counts through ``zip`` (:func:`rouge_bigrams`); sacrebleu's 13a tokenizer with the padding
as ``str.translate`` and the period/comma rule applied per run (:func:`tokens_13a`); n-gram
counting through ``zip`` (:func:`ngram_counts`); clipped n-gram matches of orders 1-4 from one
numpy sort (:func:`clipped_matches`), shared by BLEU and GLEU; and the GLEU ratio
``matches / max(hyp n-grams, ref n-grams)``, the one line NLTK's ``corpus_gleu`` computes for one
pair (NLTK exposes no function taking counts).
"""
from __future__ import annotations

import functools
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from rouge_score import rouge_scorer
from rouge_score import tokenize as rouge_tokenize
from sacrebleu.metrics.bleu import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

#: The metrics of the authors' files, in their order.
PAPER_METRICS = ("rouge", "bleu", "gleu")
#: Our LaTeX-aware variants.
LATEX_METRICS = ("rouge2_latex", "bleu_latex", "gleu_latex")
ALL_METRICS = PAPER_METRICS + LATEX_METRICS + ("bleurt",)
MAX_ORDER = 4

_tokenize_13a = Tokenizer13a()

# A LaTeX command, an escaped character, one letter, a number, or any other single character.
# Letters are single tokens because in LaTeX ``ab`` is a product of two symbols.
_LATEX_TOKEN_RE = re.compile(r"\\[A-Za-z]+|\\.|[A-Za-z]|[0-9]+(?:\.[0-9]+)?|\S")
# FLAN-T5 outputs arrive split by its tokenizer (``\ frac { d }``, PAPER.md §7): rejoin commands.
_SPLIT_COMMAND_RE = re.compile(r"\\\s+(?=[A-Za-z])")


# Hand-written for speed (tested equal to ``rouge_score.tokenize.tokenize(text, None)``, 1.7x
# faster): the library replaces every run of characters outside [a-z0-9] by a space, splits,
# and re-checks every token against ^[a-z0-9]+$; that leaves exactly the maximal [a-z0-9] runs
# of the lower-cased text, which one ``findall`` returns.
assert rouge_tokenize.NON_ALPHANUM_PATTERN == r"[^a-z0-9]+", "rouge-score's tokenizer changed"
_ROUGE_TOKEN_RE = re.compile(r"[a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokenizer, no stemming (what ``RougeScorer(["rouge2"])`` uses)."""
    return _ROUGE_TOKEN_RE.findall(text.lower())


def rouge_bigrams(tokens: Sequence[str]) -> Counter:
    """``rouge_scorer._create_ngrams(tokens, 2)``, counted through ``zip`` in C (3x faster; the
    library loops in Python). Same keys (token tuples), same counts: tested equal."""
    return Counter(zip(tokens, tokens[1:]))


# sacrebleu's 13a tokenizer spends most of its time in regexes: one pads each of 29
# punctuation characters with spaces, one regex match per character (LaTeX is mostly such
# characters), and ``([^0-9])([\.,])`` tries a match at every position of the line.
# ``str.translate`` does the padding in C, 3x faster (the table is derived from sacrebleu's own
# regex); the period/comma rule is applied only to runs of periods and commas (see
# ``_pad_period_comma_run``); the other rules are sacrebleu's compiled regexes, in its order,
# skipped when the one character they need is absent (a regex that cannot match changes
# nothing). tests/test_metrics.py checks equality with ``Tokenizer13a`` on random text.
_PAD_PATTERN = _tokenize_13a._post_tokenizer._re[0][0]
_PAD_TABLE = {code: f" {chr(code)} " for code in range(0x3000) if _PAD_PATTERN.fullmatch(chr(code))}
_PERIOD_COMMA_RULE, _COMMA_AFTER_RULE, _DASH_RULE = _tokenize_13a._post_tokenizer._re[1:]
assert _PERIOD_COMMA_RULE[0].pattern == r"([^0-9])([\.,])", "sacrebleu's 13a rules changed"
_PERIOD_COMMA_RUN_RE = re.compile(r"[.,]+")
_ASCII_DIGITS = frozenset("0123456789")


def _pad_period_comma_run(match: re.Match) -> str:
    # sacrebleu's rule ``([^0-9])([\.,]) -> \1 \2 `` matches a character and a period or comma,
    # left to right without overlap. A match always ends on a period or comma, so the rule acts
    # on each run of them and the one character before it independently: replay the regex
    # engine's scan on that short stretch instead of at every position of the line.
    line, start = match.string, match.start()
    before = line[start - 1] if start > 0 else ""
    stretch = before + match.group()
    out, i = [], 0
    while i < len(stretch):
        if i + 1 < len(stretch) and stretch[i] not in _ASCII_DIGITS and stretch[i + 1] in ".,":
            out.append(f"{stretch[i]} {stretch[i + 1]} ")
            i += 2
        else:
            out.append(stretch[i])
            i += 1
    return "".join(out)[len(before):]


def tokens_13a(text: str) -> list[str]:
    """sacrebleu's 13a tokenizer (mteval-v13a), split into tokens (same result, faster)."""
    # Tokenizer13a's language-independent part, verbatim.
    line = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = (line.replace("&quot;", '"').replace("&amp;", "&")
                .replace("&lt;", "<").replace("&gt;", ">"))
    line = f" {line} ".translate(_PAD_TABLE)
    if "." in line or "," in line:
        line = _PERIOD_COMMA_RUN_RE.sub(_pad_period_comma_run, line)
        line = _COMMA_AFTER_RULE[0].sub(_COMMA_AFTER_RULE[1], line)
    if "-" in line:
        line = _DASH_RULE[0].sub(_DASH_RULE[1], line)
    return line.split()


def ngram_counts(tokens: Sequence[str], max_order: int = MAX_ORDER) -> list[Counter]:
    """One Counter of n-grams per order 1..max_order. Together they are what sacrebleu's
    ``extract_all_word_ngrams`` returns; counted through ``zip`` in C (2x faster, tested equal)."""
    return [Counter(zip(*(tokens[i:] for i in range(n)))) for n in range(1, max_order + 1)]


def counter_matches(hyp_tokens: Sequence[str], ref_tokens: Sequence[str]) -> list[int]:
    """Clipped n-gram matches of orders 1..4 from n-gram Counters, as sacrebleu's
    ``_compute_segment_statistics`` counts them (iterating the smaller Counter). The same numbers
    as :func:`clipped_matches`, which falls back to this where its integer codes would overflow."""
    correct = []
    for hyp, ref in zip(ngram_counts(hyp_tokens), ngram_counts(ref_tokens)):
        small, large = (hyp, ref) if len(hyp) <= len(ref) else (ref, hyp)
        correct.append(sum(min(count, large[gram]) for gram, count in small.items() if gram in large))
    return correct


_INT64_LIMIT = 2**63


def clipped_matches(hyp_tokens: Sequence[str], ref_tokens: Sequence[str]) -> list[int]:
    """Clipped n-gram matches of orders 1..4: for each n-gram, min(count in hypothesis, count in
    reference), summed per order. These are sacrebleu's BLEU ``correct`` statistics
    (``BLEU._compute_segment_statistics``) and, summed, NLTK ``corpus_gleu``'s true positives.

    Hand-written for speed (2-3x faster than counting tuples in Counters, tested equal): tokens
    become small integers, each n-gram one int64 code (digits in base vocabulary+1, so orders
    never collide), one sort groups equal n-grams of both sides, and the minima are summed in
    numpy; no Python object is made per n-gram."""
    if not hyp_tokens or not ref_tokens:
        return [0] * MAX_ORDER
    vocab = dict(zip(dict.fromkeys([*hyp_tokens, *ref_tokens]), range(1, len(hyp_tokens) + len(ref_tokens) + 1)))
    base = len(vocab) + 1
    if 2 * base**MAX_ORDER >= _INT64_LIMIT:  # over ~46,000 distinct tokens in one pair
        return counter_matches(hyp_tokens, ref_tokens)

    def codes(tokens, side):
        ids = np.fromiter(map(vocab.__getitem__, tokens), dtype=np.int64, count=len(tokens))
        orders = [ids]
        for n in range(1, MAX_ORDER):
            orders.append(orders[-1][:-1] * base + ids[n:])
        # The lowest bit tells which side an n-gram came from.
        return np.concatenate(orders) * 2 + side

    both = np.sort(np.concatenate((codes(hyp_tokens, 0), codes(ref_tokens, 1))), kind="stable")
    grams = both >> 1
    starts = np.flatnonzero(np.concatenate(([True], grams[1:] != grams[:-1])))
    in_ref = np.add.reduceat(both & 1, starts)
    in_hyp = np.diff(np.append(starts, len(both))) - in_ref
    order = np.searchsorted(np.array([base, base**2, base**3], dtype=np.int64), grams[starts], side="right")
    matches = np.bincount(order, weights=np.minimum(in_hyp, in_ref), minlength=MAX_ORDER)
    return [int(m) for m in matches]


def latex_tokens(text: str) -> list[str]:
    """Our LaTeX-aware tokens: commands, braces, operators, single letters and numbers kept."""
    return _LATEX_TOKEN_RE.findall(_SPLIT_COMMAND_RE.sub(r"\\", text))


class _TextStats:
    """What every metric needs from one string, computed once per distinct string."""

    __slots__ = ("rouge_bigrams", "tokens", "length", "totals", "n_ngrams")

    def __init__(self, rouge_bigrams: Counter, tokens: list[str]):
        self.rouge_bigrams, self.tokens, self.length = rouge_bigrams, tokens, len(tokens)
        self.totals = [max(0, self.length - n + 1) for n in range(1, MAX_ORDER + 1)]
        self.n_ngrams = sum(self.totals)


@functools.lru_cache(maxsize=2**17)
def _paper_stats(text: str) -> _TextStats:
    return _TextStats(rouge_bigrams(rouge_tokens(text)), tokens_13a(text))


@functools.lru_cache(maxsize=2**17)
def _latex_stats(text: str) -> _TextStats:
    tokens = latex_tokens(text)
    return _TextStats(rouge_bigrams(tokens), tokens)


def clear_cache() -> None:
    """Forget the per-string tokens and n-gram counts (the benchmark measures cold scoring)."""
    _paper_stats.cache_clear()
    _latex_stats.cache_clear()
    _tokenize_13a.__call__.cache_clear()  # sacrebleu's own cache, in case anything used it


def _scores(prediction: _TextStats, reference: _TextStats, rouge_name: str, bleu_name: str,
            gleu_name: str, wanted: set) -> dict:
    out = {}
    if rouge_name in wanted:
        out[rouge_name] = rouge_scorer._score_ngrams(reference.rouge_bigrams,
                                                     prediction.rouge_bigrams).fmeasure
    if bleu_name in wanted or gleu_name in wanted:
        correct = clipped_matches(prediction.tokens, reference.tokens)
        if bleu_name in wanted:
            out[bleu_name] = BLEU.compute_bleu(list(correct), list(prediction.totals),
                                               prediction.length, reference.length,
                                               smooth_method="none", effective_order=False,
                                               max_ngram_order=MAX_ORDER).score / 100.0
        if gleu_name in wanted:
            # nltk.translate.gleu_score.corpus_gleu for one pair: tp / max(tpfp, tpfn), 0 if empty.
            n_all = max(prediction.n_ngrams, reference.n_ngrams)
            out[gleu_name] = sum(correct) / n_all if n_all > 0 else 0.0
    return out


def _check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; known: {', '.join(ALL_METRICS)}")
    return metrics


def score_pair(prediction: str, reference: str,
               metrics: Sequence[str] = PAPER_METRICS + LATEX_METRICS) -> dict[str, float]:
    """Scores of one (prediction, reference) pair as fractions, e.g. ``{"rouge": 0.91, ...}``."""
    return {name: float(values[0])
            for name, values in score_pairs([prediction], [reference], metrics).items()}


def score_pairs(predictions: Sequence[str], references: Sequence[str],
                metrics: Sequence[str] = PAPER_METRICS, bleurt_checkpoint: str | Path | None = None,
                ) -> dict[str, np.ndarray]:
    """Score many pairs; returns metric -> array of per-pair scores (fractions, pair order)."""
    metrics = _check_metrics(metrics)
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    for what, texts in (("prediction", predictions), ("reference", references)):
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise ValueError(f"{what} {bad} is {type(texts[bad]).__name__}, not a string")
    wanted = set(metrics)
    columns: dict[str, list[float]] = {m: [] for m in metrics if m != "bleurt"}
    paper_wanted = wanted & set(PAPER_METRICS)
    latex_wanted = wanted & set(LATEX_METRICS)
    for prediction, reference in zip(predictions, references):
        if paper_wanted:
            row = _scores(_paper_stats(prediction), _paper_stats(reference),
                          "rouge", "bleu", "gleu", paper_wanted)
            for name, value in row.items():
                columns[name].append(value)
        if latex_wanted:
            row = _scores(_latex_stats(prediction), _latex_stats(reference),
                          "rouge2_latex", "bleu_latex", "gleu_latex", latex_wanted)
            for name, value in row.items():
                columns[name].append(value)
    out = {name: np.asarray(values, dtype=float) for name, values in columns.items()}
    if "bleurt" in wanted:
        out["bleurt"] = bleurt_scorer(bleurt_checkpoint)(predictions, references)
    return {name: out[name] for name in metrics}


# ----------------------------------------------------------------------------------- BLEURT

def bleurt_unavailable(checkpoint: str | Path | None) -> str | None:
    """Why BLEURT cannot be computed here (None when it can). Nothing is ever downloaded."""
    if not checkpoint:
        return ("BLEURT left out: no local checkpoint given (the paper used bleurt-large-512; "
                "pass its directory as bleurt_checkpoint)")
    if not Path(checkpoint).is_dir():
        return f"BLEURT left out: checkpoint directory {checkpoint} does not exist"
    try:
        import bleurt.score  # noqa: F401  (optional; pulls in TensorFlow)
    except ImportError:
        return ("BLEURT left out: the 'bleurt' package is not installed "
                "(pip install git+https://github.com/google-research/bleurt)")
    return None


def bleurt_scorer(checkpoint: str | Path | None):
    """A function (predictions, references) -> array of BLEURT scores from a local checkpoint."""
    reason = bleurt_unavailable(checkpoint)
    if reason:
        raise ValueError(reason)
    from bleurt import score as bleurt_score  # optional heavy dependency (TensorFlow), only with a checkpoint

    scorer = bleurt_score.BleurtScorer(str(checkpoint))

    def run(predictions, references):
        return np.asarray(scorer.score(references=list(references), candidates=list(predictions)),
                          dtype=float)
    return run
