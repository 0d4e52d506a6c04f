"""Bottom layer: the project's vocabulary and plumbing, imported by every other layer.

``vocabulary`` (set names, record fields, item ids), ``params`` (parameter validation),
``files`` (atomic writes, JSONL), ``seeding`` (per-item generators), ``progress`` (rate and
time-left lines), ``parallel`` (worker back-ends), ``interrupts`` (Ctrl-C at safe points).
Nothing here imports another part of derivlib.
"""
