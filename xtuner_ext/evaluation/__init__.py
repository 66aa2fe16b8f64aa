"""Benchmarks for xtuner_ext models."""
