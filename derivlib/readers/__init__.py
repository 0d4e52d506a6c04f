"""Readers of external formats, one module per format: ``released`` (the authors' results
files), ``runs`` (derivlib's own files and run directories) and ``harness`` (lm-evaluation-harness
``--log_samples`` output of derivlib's exported tasks). They turn files into records of
the shared vocabulary (:mod:`derivlib.base.vocabulary`); the core never imports them."""
