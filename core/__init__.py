"""Contrastive Playground compute package: data, augmentation, models, losses, training, metrics.

Never imports streamlit: pages and tests drive the same code.
"""
