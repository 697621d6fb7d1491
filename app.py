"""Contrastive Playground: ``streamlit run app.py``.

The entry point is a router: page config, per-session glue, ``st.navigation``. Nothing here imports torch,
so the home page is interactive within a couple of seconds of a cold start; ``ui.warmup`` loads torch and
the training stack in a background thread meanwhile.
"""
from __future__ import annotations

import streamlit as st

from ui import session, warmup

st.set_page_config(page_title="Contrastive Playground", page_icon=":material/scatter_plot:", layout="wide")

warmup.start()

pages = {
    "": [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True,
                help="What the playground is for, one-click lessons, and the models in your session."),
    ],
    "Learn": [
        st.Page("pages/augmentation_lab.py", title="Augmentation Lab", icon=":material/auto_awesome_mosaic:",
                help="See what augmentations do to an image, and which ones a trained model has learned to "
                     "ignore. The Train page uses the settings chosen here."),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:",
                help="Train a contrastive model live: press play and watch the loss fall and the embedding "
                     "space organise itself."),
    ],
    "Look inside": [
        st.Page("pages/explorer.py", title="Embedding Explorer", icon=":material/bubble_chart:",
                help="Maps of an embedding space (UMAP, PCA, t-SNE) with how far to trust them, nearest "
                     "neighbours, similarity matrices, health checks and a comparison of two spaces."),
    ],
}
page = st.navigation(pages)

session.keep_settings()

session.sync_registry()
# Filled after the page ran, so the status line shows what the page's buttons just did (not one action behind).
status_box = st.sidebar.container()

page.run()

session.sidebar_status(status_box)
