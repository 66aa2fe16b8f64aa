"""Before/after evaluation: the question set, the metrics, the model backends and the report."""
