"""Seeded generators: every random choice in derivlib draws from one of these."""
from __future__ import annotations

import hashlib
import random

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed the global generators that libraries draw from behind our back (torch, numpy)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch  # optional heavy dependency: only when seeding a training run
        torch.manual_seed(seed)
    except ImportError:
        pass


def item_rng(seed: int, index: int, stream: str = "") -> random.Random:
    """A generator for one item, derived from (seed, index, stream) alone.

    Serial, parallel and resumed runs give item ``index`` the same draws whatever else ran.
    """
    digest = hashlib.sha256(f"{seed}:{index}:{stream}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))
