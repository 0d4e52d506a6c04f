"""Orchestration: one module per notebook, the only code that writes run directories and figures.

Each stage module has ``Params`` (a frozen dataclass of the notebook's parameters),
``open_run(namespace) -> Run`` (validate a notebook's or a command's parameters and open the
run directory), and ``run(run) -> Result`` (compute, or load a complete run). ``rundir`` holds
the run-directory contract they share.
"""
