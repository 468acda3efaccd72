"""Research code beside the pipeline, not installed with it (run from a checkout: ``python -m experiments.paper``)."""
