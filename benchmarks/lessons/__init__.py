"""The lessons suite: How long until each lesson, preset and course step shows its point?

    python -m benchmarks.lessons [--quick] [--only NAME] [--markdown]
"""
