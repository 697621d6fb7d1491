"""Contrastive Playground: ``streamlit run app.py``.

The entry point is a router: page config, per-session glue, ``st.navigation``. Nothing here imports torch,
so the home page is interactive within a couple of seconds of a cold start; ``ui.warmup`` loads torch and
the training stack in a background thread meanwhile.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui import course, router, session, urlstate, warmup, widgets

# A shipped PNG: a ":material/...:" page icon makes the browser fetch the favicon from the web.
FAVICON = str(Path(__file__).resolve().parent / "assets" / "favicon.png")
st.set_page_config(page_title="Contrastive Playground", page_icon=FAVICON, layout="wide")
st.html(widgets.PAGE_CSS)

warmup.start()

pages = {
    "": [
        home := st.Page("pages/home.py", title="Home", icon=":material/home:", default=True,
                        help="What the playground is for, one-click lessons, and the models in your session."),
    ],
    "Learn": [
        st.Page("pages/augmentation_lab.py", title="Augmentation Lab", icon=":material/auto_awesome_mosaic:",
                help="See what augmentations do to an image, and which ones a trained model has learned to "
                     "ignore. The Train page uses the settings chosen here."),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:",
                help="Train a contrastive model live: press play and watch the loss fall and the embedding "
                     "space organise itself."),
        st.Page("pages/loss_lab.py", title="Loss & Temperature Lab", icon=":material/functions:",
                help="What the loss does: a toy to watch, one batch taken apart at any temperature, and the "
                     "classic results reproduced."),
    ],
    "Use": [
        st.Page("pages/clip.py", title="CLIP", icon=":material/image_search:",
                help="Zero-shot classification, text and image search, and images + prompts on one map, with a "
                     "CLIP that works offline."),
        st.Page("pages/text.py", title="Text", icon=":material/text_fields:",
                help="Semantic search with a sentence model, why a result ranks where it does, and contrastive "
                     "fine-tuning on your own pairs."),
    ],
    "Look inside": [
        st.Page("pages/explorer.py", title="Embedding Explorer", icon=":material/bubble_chart:",
                help="Maps of an embedding space (UMAP, PCA, t-SNE) with how far to trust them, nearest "
                     "neighbours, similarity matrices, health checks and a comparison of two spaces."),
    ],
}
page = st.navigation(pages)

urlstate.restore()  # a shared link's settings, once per session, before any widget is drawn
course.follow_link(page.url_path)  # a course link opens its step's page
session.keep_settings()

session.sync_registry()
# Filled after the page ran, so the status line shows what the page's buttons just did (not one action behind).
status_box = st.sidebar.container()

urlstate.show_problems()
if page is not home:  # every other page draws plotly charts: not while pandas is half imported (ui.warmup)
    warmup.plotly_ready()
try:
    course.panel(page.url_path)  # the open course's step, on top of every page (nothing without a course)
    with router.running():  # the page's guard (ui/router.py) sees it runs under the router
        page.run()
finally:  # also when the page stopped early (st.stop) or asked for a rerun
    session.sidebar_status(status_box)
    urlstate.write()  # the address now holds every changed setting, so a copied link reproduces this page
