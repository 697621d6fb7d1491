"""Home: what the playground is for, the device it runs on, one-click lessons, the session's models."""
from __future__ import annotations

import streamlit as st

from ui import presets, registry, warmup
from ui.widgets import user_errors

st.title("Contrastive Playground")
st.markdown(
    "Contrastive learning teaches a network what is **the same** and what is **different** without labels: "
    "two augmented views of one image should land close together, views of other images far apart. "
    "Here you can see the augmentations, train a model live, and watch the embedding space organise itself "
    "— on a laptop CPU, with no internet."
)

st.subheader("Start with a lesson")
st.caption("One click opens a page already set up, with a few lines to read aloud.")
with user_errors("loading the presets"):
    cols = st.columns(3)
    for i, preset in enumerate(presets.cached_presets()):
        with cols[i % 3].container(border=True, height="stretch"):
            st.markdown(f"#### {preset.title}")
            st.caption(preset.summary)
            if st.button("Open", key=f"home.preset.{preset.id}", icon=preset.icon, type="primary"):
                presets.apply(preset)

st.subheader("Pages")
c1, c2 = st.columns(2)
with c1.container(border=True, height="stretch"):
    st.page_link("pages/augmentation_lab.py", label="Augmentation Lab", icon=":material/auto_awesome_mosaic:")
    st.caption("Pick an image, switch augmentations on and off, and see the views a model is trained to match. "
               "With a trained model: which changes it has learned to ignore.")
with c2.container(border=True, height="stretch"):
    st.page_link("pages/train.py", label="Train", icon=":material/model_training:")
    st.caption("SimCLR, MoCo, triplet, margin, SupCon or CLIP-style training, live: loss, accuracy and a 2-D "
               "view of the embeddings, redrawn every second.")
with c1.container(border=True, height="stretch"):
    st.page_link("pages/explorer.py", label="Embedding Explorer", icon=":material/bubble_chart:")
    st.caption("UMAP, PCA or t-SNE maps of any embeddings with a score for how honest the map is; click a point "
               "for its nearest neighbours; similarity, health and a side-by-side comparison of two spaces.")

with st.expander("Your models and embeddings", icon=":material/inventory_2:",
                 expanded=bool(registry.entries())):
    registry.panel("home.registry")

_ready_at_start = warmup.device_description() is not None


@st.fragment(run_every=None if _ready_at_start else 0.5)
def _device_line() -> None:
    """Filled in by the warm-up thread; polls only until torch has loaded."""
    desc = warmup.device_description()
    if desc is None:
        st.caption(":material/hourglass_top: Checking which device this runs on…")
        return
    st.caption(f":material/memory: Running on **{desc}**. Everything works offline on the built-in data.")
    if not _ready_at_start:
        st.rerun()  # a full rerun draws this fragment again without polling


_device_line()
