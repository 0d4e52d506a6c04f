"""``python -m derivlib <command>``: one module in ``derivlib/cli/`` per command."""
from __future__ import annotations

import argparse
import importlib
import sys

#: command -> (module in derivlib.cli, one-line help). Modules are imported only when used, so
#: ``verify`` does not pay for importing torch.
COMMANDS = {
    "generate": ("generate", "generate derivations with SymPy (JSONL)"),
    "verify": ("verify", "replay and check every annotated step of a derivations file"),
    "build-sets": ("build_sets", "prompts, train/dev/test split and the four perturbed test sets"),
    "perturb": ("perturb", "apply one perturbation (VR, EE, AG, SR) to a file of items"),
    "train": ("train", "fine-tune a T5-family model on a training set"),
    "predict": ("predict", "decode test sets with a trained T5-family model"),
    "prompt": ("prompt", "prompt a chat LLM through an OpenAI-compatible endpoint"),
    "score": ("score", "ROUGE-2 / BLEU / GLEU (/ BLEURT) per model and test set"),
    "check": ("check", "check generated derivations symbolically and label errors"),
    "notebook": ("notebook", "execute one numbered notebook with a parameter profile (papermill)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m derivlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    argv = sys.argv[1:] if argv is None else argv
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            mod = importlib.import_module(f"derivlib.cli.{module}")
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, PermissionError) as err:
        # Bad input is reported in one line naming the problem, not as a traceback.
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
