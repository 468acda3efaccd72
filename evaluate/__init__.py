"""Evaluation: validate, bench and report every artifact of a run, with the runners, data, tables and
plots they share."""

from bninception.core.exports import public_surface

# what other layers may use (tests/bninception/test_public_surface.py keeps this list and the imports in step)
__all__, __getattr__ = public_surface(__name__, {
    "BenchSettings": "bench",
    "DEFAULT_BATCH_SIZES": "bench",
    "bench_stage": "bench",
    "parse_batch_sizes": "bench",
    "report_stage": "report",
    "validate_stage": "validate",
    "write_report": "report",
})
