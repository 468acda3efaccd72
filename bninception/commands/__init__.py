"""CLI subcommands, one module each: ``NAME``, ``HELP``, ``ORDER``, ``add_arguments`` and ``run(args)``."""
