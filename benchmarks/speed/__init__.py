"""The speed suite: How fast are the pieces: a training step, augmentation, maps, embeddings, heatmaps, search?

    python -m benchmarks.speed [--quick] [--only NAME] [--markdown]
"""
