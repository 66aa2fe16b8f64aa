"""Evaluation: the before/after report (question set, metrics, model backends, report) and benchmarks (MMBench)."""
