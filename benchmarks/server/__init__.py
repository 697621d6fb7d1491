"""The server suite: What does a served app cost: start, first Play, a classroom, a browser tab, uploads, map engines?

    python -m benchmarks.server [--quick] [--only NAME] [--markdown]
"""
