"""``python -m derivlib train``: fine-tune a model on a sets directory. An encoder-decoder model
(``--model scratch``, a T5/FLAN-T5 directory or hub id) trains with the Seq2SeqTrainer (stage
train_t5, notebook 03); a decoder-only causal LM (``--model embedded``, a ``.gguf`` file, a model
directory or hub id) gets a LoRA adapter (stage train_lora, notebook 06), and its test sets are
decoded zero-shot afterwards.

Options are the two notebooks' parameters (``--batch-size`` for ``batch_size``...); an option of
one family given with a model of the other is an error. ``--out`` is a complete run directory,
usable as ``predict --model``.

On several processes (T5): ``accelerate launch --multi_gpu --num_processes 2 -m derivlib train ...``
(on a machine without CUDA it trains on the CPU over gloo; ``accelerate launch --cpu`` starts one
process unless MPI is configured) or ``torchrun --nproc_per_node 2 -m derivlib train ...``. Only
rank 0 writes the run directory and prints.
"""
from __future__ import annotations

import dataclasses

from ..base.params import ParameterError
from ..models import decoder
from ..stages import train_lora, train_t5
from . import options


def add_arguments(p):
    options.add_params_arguments(p, train_t5.Params, required=("sets",))
    t5_names = {f.name for f in dataclasses.fields(train_t5.Params)}
    # LoRA's own options; the shared ones (model, sets, batch_size, learning_rate...) come from above
    options.add_params_arguments(p, train_lora.Params, skip=(*options.NOT_OPTIONS, *t5_names))
    options.add_out_argument(p, "the trained model or adapter, its history and summary")


def run(args) -> int:
    given = {name for name in vars(args) if not name.startswith("_") and name not in ("out", "debug", "command")}
    model = getattr(args, "model", train_t5.Params.model)
    try:
        decoder_only = decoder.is_decoder_only(model)
    except (ValueError, OSError) as err:
        raise ParameterError(f"parameter 'model': {err}") from None
    stage = train_lora if decoder_only else train_t5
    names = {f.name for f in dataclasses.fields(stage.Params)}
    foreign = sorted(given - names)
    if foreign:
        family = "a decoder-only model (LoRA)" if stage is train_lora else "an encoder-decoder (T5) model"
        raise ValueError(f"--model {model} is {family}: option(s) {', '.join('--' + n.replace('_', '-') for n in foreign)} "
                         "apply only to the other family")
    run_ = stage.open_run(options.values(args, stage.Params), out=args.out)
    result = stage.run(run_)
    if not run_.writer:  # another rank of a distributed training: rank 0 reports
        return 0
    summary = result.summary
    print(f"best dev ROUGE-2 {100 * (summary.get('best_dev_rouge2') or 0):.2f} "
          f"({summary.get('steps')} steps, {summary.get('precision', '')}, {summary.get('device', '')})")
    print(f"model: {getattr(result, 'model_dir', None) or result.adapter_dir}")
    print(f"run directory: {run_.dir}")
    return 0
