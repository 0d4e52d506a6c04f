"""Pairs scored per second with ROUGE-2, BLEU and GLEU together, on one core (CPU time).

Two figures, both on derivations of the released length (mean 5.9 equations):

1. released pairs: the authors' released outputs and references (DERIVLIB_PAPER_RESULTS), every
   (prediction, reference) pair of the 5 sets of both files plus the perturbation pairs (rP vs r,
   sP vs s) the sensitivity columns need. Strings repeat there (the same reference in 5 sets),
   and derivlib tokenizes each distinct string once, so this is the cache-hit figure.
2. unseen pairs: the same pairs with every letter renamed by a per-pair random permutation of
   the alphabet (seeded), so that no string occurs twice in the run: every string is tokenized
   and counted afresh, as when scoring a new model's outputs. This is the honest figure.

Without the released files, both use the same number of pairs from a seeded synthetic derivation
generator of similar length (said in the output). Caches are cleared before every repetition;
best of 5. Last line: the unseen-pairs figure.
"""
from __future__ import annotations

import os
import random
import string
import time

try:  # one core, as the goal is stated
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
except (AttributeError, OSError):
    pass

from derivlib import metrics
from derivlib.readers import released

REPEATS = 5


def released_pairs() -> list[tuple[str, str]]:
    pairs = []
    for path in released.results_files().values():
        records = released.to_predictions(path)
        by_key = {(r["set"], r["id"]): r for r in records}
        pairs += [(r["prediction"], r["reference"]) for r in records]
        for (set_name, item_id), r in by_key.items():
            if set_name != "static":
                static = by_key[("static", item_id)]
                pairs += [(r["reference"], static["reference"]), (r["prediction"], static["prediction"])]
    return pairs


def synthetic_pairs(n: int = 2600) -> list[tuple[str, str]]:
    rng = random.Random(0)
    pieces = [r"\frac{d}{d x} \eta{(x)}", r"e^{x}", r"\sin{(x)}", r"\int \eta{(x)}\, dx", "x^{2}",
              r"\mathbf{E}", r"\hbar", "+", "-", r"\cdot", "t"]

    def derivation():
        return " and ".join(" ".join(rng.choice(pieces) for _ in range(5)) + " = "
                            + " ".join(rng.choice(pieces) for _ in range(4)) for _ in range(6))
    return [(derivation(), derivation()) for _ in range(n)]


def unseen_variants(pairs: list[tuple[str, str]], seed: int = 0) -> list[tuple[str, str]]:
    """Each pair with its letters renamed (the same renaming for prediction and reference, so
    the pair's scores stay realistic), different for every pair: same lengths, new strings."""
    rng = random.Random(seed)
    variants = []
    for prediction, reference in pairs:
        letters = list(string.ascii_letters)
        rng.shuffle(letters)
        rename = str.maketrans(string.ascii_letters, "".join(letters))
        variants.append((prediction.translate(rename), reference.translate(rename)))
    return variants


def best_cpu_seconds(pairs: list[tuple[str, str]]) -> float:
    predictions, references = [p for p, _ in pairs], [r for _, r in pairs]
    best = float("inf")
    for _ in range(REPEATS):
        metrics.clear_cache()
        start = time.process_time()
        metrics.score_pairs(predictions, references, metrics.PAPER_METRICS)
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    pairs = released_pairs()
    source = "released" if pairs else "synthetic, DERIVLIB_PAPER_RESULTS unset"
    pairs = pairs or synthetic_pairs()
    unseen = unseen_variants(pairs)
    mean_chars = sum(len(r) for _, r in pairs) / len(pairs)
    distinct = len({text for pair in pairs for text in pair})
    # A string may still equal its own pair partner (a perfect prediction); never another pair's.
    unseen_distinct = len({text for pair in unseen for text in pair})
    unseen_repeats = 2 * len(unseen) - unseen_distinct - sum(p == r for p, r in unseen)
    assert unseen_repeats == 0, f"{unseen_repeats} strings of the unseen pairs repeat across pairs"

    seconds = best_cpu_seconds(pairs)
    print(f"{len(pairs)} pairs ({source}, mean reference {mean_chars:.0f} characters, "
          f"{distinct} distinct strings), best of {REPEATS}: {seconds:.3f} s of CPU time")
    print(f"{source.split(',')[0]} pairs, each distinct string tokenized once (cache hits): "
          f"{len(pairs) / seconds:.0f} pairs/s")
    unseen_seconds = best_cpu_seconds(unseen)
    print(f"{len(unseen)} unseen pairs (letters renamed per pair, {unseen_distinct} distinct strings, "
          f"none seen before), best of {REPEATS}: {unseen_seconds:.3f} s of CPU time")
    print(f"{len(unseen) / unseen_seconds:.0f} pairs/s on unseen strings (ROUGE-2 + BLEU + GLEU, one core)")


if __name__ == "__main__":
    main()
