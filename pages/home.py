"""Home: what the playground is for, the device it runs on, one-click lessons, the session's models."""
from __future__ import annotations

from ui.router import require as _routed

_routed()  # a page opened before app.py ever ran: route it through app.py (ui/router.py)

import streamlit as st

from ui import course, presets, registry, warmup
from ui.widgets import user_errors

st.title("Contrastive Playground")
st.markdown(
    "Contrastive learning teaches a network what is **the same** and what is **different** without labels: "
    "two augmented views of one image should land close together, views of other images far apart. "
    "Here you can see the augmentations, train a model live, and watch the embedding space organise itself "
    "— on a laptop CPU, with no internet."
)

st.subheader("Take a course")
st.caption("A guided path through the pages: each step sets its page up, starts what needs running, points at "
           "what to look at, and asks the class to predict before the run answers. The address holds the course "
           "and the step, so every student's copy of the link opens the same step.")
course.chooser("home")

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
PAGE_CARDS = [  # (file, label, icon, what it is for)
    ("pages/augmentation_lab.py", "Augmentation Lab", ":material/auto_awesome_mosaic:",
     "Pick an image, switch augmentations on and off, and see the views a model is trained to match. With a "
     "trained model: which changes it has learned to ignore."),
    ("pages/train.py", "Train", ":material/model_training:",
     "SimCLR, MoCo, triplet, margin, SupCon or CLIP-style training, live: loss, accuracy and a 2-D view of the "
     "embeddings as they organise themselves."),
    ("pages/loss_lab.py", "Loss & Temperature Lab", ":material/functions:",
     "Watch a loss train a toy, take one batch apart at any temperature, and rerun six classic results with "
     "their figures."),
    ("pages/explorer.py", "Embedding Explorer", ":material/bubble_chart:",
     "UMAP, PCA or t-SNE maps of any embeddings with a score for how honest the map is; nearest neighbours, "
     "similarity, health and a side-by-side comparison of two spaces."),
    ("pages/clip.py", "CLIP", ":material/image_search:",
     "Zero-shot classification with prompts you type, search images with words, and see images and prompts on "
     "one map; the shipped mini-CLIP works offline."),
    ("pages/text.py", "Text", ":material/text_fields:",
     "Search sentences by meaning, see why a result ranks where it does, and fine-tune the sentence model on "
     "your own pairs with the in-batch-negatives loss."),
]
page_cols = st.columns(3)
for i, (path, label, icon, text) in enumerate(PAGE_CARDS):
    with page_cols[i % 3].container(border=True, height="stretch"):
        st.page_link(path, label=label, icon=icon)
        st.caption(text)

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
