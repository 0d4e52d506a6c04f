"""Bottom layer: the project's vocabulary and plumbing, imported by every other layer.

``vocabulary`` (set names, record fields, item ids), ``params`` (parameter validation),
``files`` (atomic writes, JSONL), ``seeding`` (per-item generators). Nothing here imports
another part of derivlib.
"""
