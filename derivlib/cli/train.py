"""``python -m derivlib train``: fine-tune a T5-family model on a sets directory (stage train_t5).

Options are notebook 03_train_t5's parameters (``--batch-size`` for ``batch_size``...); ``--out``
is a complete train_t5 run directory, usable as ``predict --model``.

On several processes: ``accelerate launch --multi_gpu --num_processes 2 -m derivlib train ...``
(on a machine without CUDA it trains on the CPU over gloo; ``accelerate launch --cpu`` starts one
process unless MPI is configured) or ``torchrun --nproc_per_node 2 -m derivlib train ...``. Only
rank 0 writes the run directory and prints.
"""
from __future__ import annotations

from ..stages import train_t5 as stage
from . import options


def add_arguments(p):
    options.add_params_arguments(p, stage.Params, required=("sets",))
    options.add_out_argument(p, "the trained model, its history and summary")


def run(args) -> int:
    run_ = stage.open_run(options.values(args, stage.Params), out=args.out)
    result = stage.run(run_)
    if not run_.writer:  # another rank of a distributed training: rank 0 reports
        return 0
    print(f"best dev ROUGE-2 {100 * (result.summary['best_dev_rouge2'] or 0):.2f} "
          f"({result.summary['steps']} steps, {result.summary['precision']}, {result.summary['device']})")
    print(f"model: {result.model_dir}")
    print(f"run directory: {run_.dir}")
    return 0
