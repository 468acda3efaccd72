"""CLI subcommands, one module each, discovered by ``bninception.cli``.

Each module defines ``NAME``, ``HELP``, ``ORDER`` (position in ``--help``),
``add_arguments(parser)`` and ``run(args) -> int``. Top-level imports stay light
(argparse, typing): heavy work is imported inside ``run`` so ``bninception --help`` is fast.
"""
