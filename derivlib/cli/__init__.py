"""One module per command; each defines ``add_arguments(parser)`` and ``run(args) -> int``."""
