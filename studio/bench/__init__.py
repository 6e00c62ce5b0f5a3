"""Benchmarks and the tiny, randomly initialised models that tests and benchmarks build offline."""
