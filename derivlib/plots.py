"""TRANSITIONAL SHIM (removed before the restructure lands)."""
from .presentation.plots import *  # noqa: F401,F403
