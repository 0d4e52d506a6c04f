"""Pairs scored per second with ROUGE-2, BLEU and GLEU together, on one core, cold caches.

Pairs: the authors' released outputs and references (DERIVLIB_PAPER_RESULTS; derivations of the
released length, mean 5.9 equations), every (prediction, reference) pair of the 5 sets of both
files plus the perturbation pairs (rP vs r, sP vs s) the sensitivity columns need. Without the
files, the same number of pairs is made from a fixed synthetic derivation of similar length.
The per-string cache is cleared before every repetition, so each string is tokenized afresh.
Last line: the figure.
"""
from __future__ import annotations

import os
import random
import time

try:  # one core, as the goal is stated
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
except (AttributeError, OSError):
    pass

from derivlib import metrics, paper


def released_pairs() -> list[tuple[str, str]]:
    pairs = []
    for path in paper.results_files().values():
        records = paper.to_predictions(path)
        by_key = {(r["set"], r["id"]): r for r in records}
        pairs += [(r["prediction"], r["reference"]) for r in records]
        for (set_name, item_id), r in by_key.items():
            if set_name != "static":
                static = by_key[("static", item_id)]
                pairs += [(r["reference"], static["reference"]), (r["prediction"], static["prediction"])]
    return pairs


def synthetic_pairs(n: int = 1800) -> list[tuple[str, str]]:
    rng = random.Random(0)
    pieces = [r"\frac{d}{d x} \eta{(x)}", r"e^{x}", r"\sin{(x)}", r"\int \eta{(x)}\, dx", "x^{2}",
              r"\mathbf{E}", r"\hbar", "+", "-", r"\cdot", "t"]
    def derivation():
        return " and ".join(" ".join(rng.choice(pieces) for _ in range(5)) + " = "
                            + " ".join(rng.choice(pieces) for _ in range(4)) for _ in range(6))
    return [(derivation(), derivation()) for _ in range(n)]


def main() -> None:
    pairs = released_pairs() or synthetic_pairs()
    source = "released" if paper.results_dir() else "synthetic (DERIVLIB_PAPER_RESULTS unset)"
    predictions, references = [p for p, _ in pairs], [r for _, r in pairs]
    mean_chars = sum(map(len, references)) / len(references)
    best = float("inf")
    for _ in range(5):
        metrics.clear_cache()
        start = time.process_time()
        metrics.score_pairs(predictions, references, metrics.PAPER_METRICS)
        best = min(best, time.process_time() - start)
    print(f"{len(pairs)} pairs ({source}, mean reference {mean_chars:.0f} characters), "
          f"best of 5 cold runs: {best:.3f} s of CPU time")
    print(f"{len(pairs) / best:.0f} pairs/s (ROUGE-2 + BLEU + GLEU, one core)")


if __name__ == "__main__":
    main()
