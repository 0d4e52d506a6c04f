"""Readers of external formats, one module per format: ``released`` (the authors' results
files) and ``runs`` (derivlib's own files and run directories). They turn files into records of
the shared vocabulary (:mod:`derivlib.base.vocabulary`); the core never imports them."""
