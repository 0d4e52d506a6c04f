"""One function per figure type. Each takes data (DataFrames, dicts) and returns a matplotlib
Figure; notebooks save it with ``run.save_figure``. Several engineers append here: edit with
targeted insertions only."""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

sns.set_theme(style="whitegrid", context="notebook")
__all__ = ["plt", "sns"]
