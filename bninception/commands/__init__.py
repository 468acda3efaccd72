"""CLI subcommands, one module each: ``NAME``, ``HELP``, ``ORDER``, ``add_arguments`` and ``run(args)``."""

MODULES = ("pipeline", "train", "population", "import_weights", "export", "fold", "calibrate", "build_engine",
           "validate", "bench", "report", "serve", "triton_repo")
