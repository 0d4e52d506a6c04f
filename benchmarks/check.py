"""Generated equations checked per second on one core (parse + label), on the released model
outputs (DERIVLIB_PAPER_RESULTS) or, without them, on reference derivations of the generator.
Also prints the parse round-trip rate on generated derivations. The last line is the figure."""
from __future__ import annotations

import argparse
import time

from derivlib import check, derivation, generate, latex
from derivlib.readers import released


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generated", type=int, default=0,
                        help="also measure the round trip on this many generated derivations (e.g. 2000)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes generating those derivations (same derivations whatever the number)")
    args = parser.parse_args()
    if args.generated:
        records, _ = generate.generate(args.generated, seed=0, workers=args.workers)
        sreprs = [s for r in records for _, s in r["srepr_derivation"]]
        good = sum(latex.parse(derivation.latex_of_srepr(s)).expr == latex.canonicalize(derivation.from_srepr(s))
                   for s in sreprs)
        print(f"round trip on {len(records)} generated derivations: {good}/{len(sreprs)} equations "
              f"({100 * good / len(sreprs):.2f}%)")
    files = released.results_files()
    if not files:
        raise SystemExit(f"needs the released results: {released.DOWNLOAD_HINT}")
    records = [r for path in files.values() for r in released.to_predictions(path)]
    start = time.process_time()
    checks = check.check_records(records)
    seconds = time.process_time() - start
    equations = sum(len(c.equations) for c in checks)
    print(check.format_table(check.summarize(checks)))
    print(f"checked {equations} equations of {len(checks)} derivations in {seconds:.1f} s CPU (cold caches)")
    print(f"{equations / seconds:.0f} equations/s/core")


if __name__ == "__main__":
    main()
