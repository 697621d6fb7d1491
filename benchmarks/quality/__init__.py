"""The quality suite: How good is what the app shows and trains?

    python -m benchmarks.quality [--quick] [--only NAME] [--markdown]
"""
