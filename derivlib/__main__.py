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
    "train": ("train", "fine-tune a T5-family model, or a decoder LLM with LoRA, on a training set"),
    "predict": ("predict", "decode test sets with a trained T5 or LoRA run"),
    "prompt": ("prompt", "prompt an LLM in context: an OpenAI-compatible endpoint or a local model"),
    "score": ("score", "ROUGE-2 / BLEU / GLEU (/ BLEURT) per model and test set"),
    "check": ("check", "check generated derivations symbolically and label errors"),
    "export": ("export", "lm-evaluation-harness tasks, a Hugging Face dataset, or step labels"),
    "notebook": ("notebook", "execute one numbered notebook with a parameter profile (papermill)"),
    "report": ("report", "the HTML report of a profile: executed notebooks, figures, main results"),
    "serve": ("serve", "serve a local model through an OpenAI-compatible endpoint (transformers serve)"),
}


#: Exceptions that mean bad input (a file, a parameter, a directory): one line, exit status 2.
INPUT_ERRORS = (ValueError, TypeError, KeyError, LookupError, OSError)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m derivlib", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            mod = importlib.import_module(f"derivlib.cli.{module}")
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted: complete runs and cached answers are kept; an unfinished run directory "
              "is left as <dir>.partial and a rerun of the same command resumes it", file=sys.stderr)
        return 130
    except INPUT_ERRORS as err:
        if args.debug:
            raise
        # Bad input is reported in one line naming the problem, not as a traceback.
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 -- anything else: one line, and how to see more
        if args.debug:
            raise
        message = " ".join(str(err).split())[:500]
        print(f"error: {type(err).__name__}: {message} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
