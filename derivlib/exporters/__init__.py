"""Exporters: derivlib's benchmark written in the formats other tools read, one module per format.

``lmeval`` (an lm-evaluation-harness task directory, whose ``utils.py`` calls ``harness_hooks``),
``hf`` (a Hugging Face dataset directory with its card) and ``steps`` (PRM800K-shaped step
labels of checked derivations). ``common`` holds what they share: the sets run they read
(:func:`common.read_sets_run`) and the export directory they write, all or nothing
(:func:`common.write_export`).

A layer of its own above ``readers`` (pyproject.toml's import-linter contract): exporters read
runs through the readers and call the core; nothing below imports them.
"""
