"""Errors a user can act on: the CLI prints their message, never a traceback."""


class BninceptionError(Exception):
    """A clear, user-facing error (bad file, bad shape, missing artifact...)."""


class GateFailure(BninceptionError):
    """A parity or accuracy gate failed; the CLI exits with status 1."""
