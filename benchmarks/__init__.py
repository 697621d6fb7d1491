"""Benchmark suites of Contrastive Playground: ``quality``, ``speed``, ``lessons``, ``server`` (README.md)."""
