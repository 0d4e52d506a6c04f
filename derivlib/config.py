"""TRANSITIONAL SHIM (removed before the restructure lands): the old names, re-exported."""
from .base.files import *  # noqa: F401,F403
from .base.params import *  # noqa: F401,F403
from .base.params import _type_ok  # noqa: F401
from .base.seeding import *  # noqa: F401,F403
from .stages.rundir import *  # noqa: F401,F403
from .stages.rundir import _new_meta, _determining_versions  # noqa: F401


def start_run_at(directory, stage, params, inputs=None):
    return start_run(stage, params, inputs=inputs, out=directory)
