"""Augmentation Lab: what the augmentations do to one image, and which of them a trained model ignores.

The settings chosen here (``aug.*``) are the ones the Train page trains with.
"""
from __future__ import annotations

from ui.router import require as _routed

_routed()  # a page opened before app.py ever ran: route it through app.py (ui/router.py)

import json

import numpy as np
import streamlit as st

from ui import loaders, registry, yourimages
from ui import settings as S
from ui import widgets as W
from ui.widgets import user_errors

st.title("Augmentation Lab")
st.caption(
    "A contrastive model is trained to say that two augmented views of the same image are *the same thing*. "
    "So whatever an augmentation changes, the model learns to ignore. Choose the changes here; the Train page "
    "trains with exactly these settings."
)
W.lesson_banner("lab")

DATASET_NAMES = {"shapes": "Shapes (coloured shapes, 32 px)", "digits": "Digits (handwritten, 8 px)",
                 "photos": "Photos (a few classic test photos)", "upload": "Upload your own image",
                 "yours": "Your images (a .zip of a set)"}
UPLOAD_SIZE = 96  # side an uploaded image is cropped and resized to when no model is chosen
MAX_IMAGE_MB = 25  # core.data.MAX_IMAGE_BYTES, in MB (the page imports no torch; a test checks they agree)
N_NEGATIVES = 4
DISPLAY_PX = 112

with st.spinner("Loading the augmentation engine…"):
    import torch

    from core.errors import PlaygroundError


def _random_image(n: int) -> None:
    st.session_state["lab.image"] = int(np.random.default_rng().integers(n))


def _new_views() -> None:
    st.session_state["lab.seed"] = int(st.session_state.get("lab.seed", 0)) + 1


def _dataset_opts(name: str, size: int | None = None) -> dict:
    if name == "shapes":
        return {"n": 500, "size": 32, "seed": 0}
    if name == "photos" and size is not None:
        return {"size": int(size)}
    return {}


def _chw(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) as shown -> uint8 tensor (..., 3, H, W) as core takes it."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).movedim(-1, -3)


left, right = st.columns([1, 2.3], gap="large")

# ------------------------------------------------------------------------------------------ left: choices
with left:
    st.subheader("Image")
    ds_name = W.select("lab.dataset", format_func=DATASET_NAMES.get, on_change=W.follow_dataset,
                       args=("lab.dataset",))
    model_box = st.container()  # the model picker sits here; filled once the image size is known

    image = None  # uint8 (H, W, 3)
    caption = ""
    ds = ds_opts = entry = None
    neg_name = ds_name
    index = 0
    with user_errors("loading the image"):
        if ds_name == "upload":
            up = st.file_uploader(f"An image file (PNG, JPEG, WebP, …), up to {MAX_IMAGE_MB} MB", key="lab.upload",
                                  max_upload_size=MAX_IMAGE_MB,
                                  help="Kept in this session only; cropped to a square.")
            with model_box:
                entry = registry.pick("Check with a trained model (optional)", "lab.model",
                                      kinds=("trained", "clip"), accept=lambda e: e.embed_images is not None)
            size = entry.image_size if entry is not None and entry.image_size else UPLOAD_SIZE
            if up is not None:
                image = loaders.decoded_upload(up.getvalue(), int(size))
                caption = up.name
            ds_opts = _dataset_opts("photos", size)
            ds = loaders.dataset("photos", **ds_opts)  # negatives come from the built-in photos
            neg_name = "photos"
        else:
            ds_opts = _dataset_opts(ds_name)
            ds = yourimages.source("lab.yours") if ds_name == "yours" else loaders.dataset(ds_name, **ds_opts)
            if ds is not None:  # None: your images, none added yet (the uploader is the hint)
                neg_name = ds_name
                with model_box:
                    entry = registry.pick(
                        "Check with a trained model (optional)", "lab.model", kinds=("trained", "clip"),
                        accept=lambda e: e.embed_images is not None and e.image_size == ds.image_size,
                        help="Models trained on images of this size. Train one on the Train page.")
                n_images = len(ds)
                if int(st.session_state.get("lab.image", 0)) >= n_images:
                    st.session_state["lab.image"] = 0
                index = st.slider("Image", 0, n_images - 1, **W.initial("lab.image", value=S.default("lab.image")),
                                  key="lab.image", help="Slide through the dataset, or pick one at random.")
                st.button("Another image", key="lab.random", on_click=_random_image, args=(n_images,),
                          icon=":material/casino:")
                image = loaders.to_uint8_hwc(ds.images[index])
                if ds.captions:
                    caption = ds.captions[index]
                else:
                    caption = ", ".join(f"{f}: {ds.classes[f][int(ds.labels[f][index])]}" for f in ds.factors)

    st.subheader("Augmentations")
    st.caption(f"Now: {W.recipe_caption('photos' if ds_name == 'upload' else ds_name)}. Choosing a dataset "
               "switches to its recipe.")
    W.augment_editor(where="lab")
    with st.expander("Share or save these settings", icon=":material/share:"):
        W.share_panel("lab")

# ------------------------------------------------------------------------------------------ right: views
with right:
    if image is None:
        st.info("Upload an image (or a .zip of your images) on the left to see its views.",
                icon=":material/upload:")
        st.stop()

    cfg = None
    with user_errors("reading the augmentation settings"):
        cfg = W.augment_config()
    if cfg is None:
        st.stop()
    aug_json = json.dumps(cfg.to_dict(), sort_keys=True)
    n_views = int(W.current("lab.n_views"))
    seed = int(W.current("lab.seed"))

    top = st.columns([1, 2], vertical_alignment="center")
    with top[0]:
        big = loaders.upscale(image, 160)
        st.image(big, caption=f"Original · {caption}", width=big.shape[1])
    with top[1]:
        st.markdown("**Each view is made by:**")
        st.markdown("\n".join(f"- {line}" for line in cfg.describe()))

    head = st.columns([2.2, 2, 1.4], vertical_alignment="bottom")
    head[0].subheader("Views of this image")
    with head[1]:
        W.select_slider("lab.n_views")
    head[2].button("New views", key="lab.new_views", on_click=_new_views, icon=":material/refresh:")

    if ds_name in ("upload", "yours"):
        views = loaders.views_of_array(image, aug_json, n_views, seed)
    else:
        views = loaders.views(ds_name, loaders.opts_key(ds_opts), index, aug_json, n_views, seed)

    # Negatives: one view each of a few other images (their originals also give the "other images" baseline).
    rng = np.random.default_rng(seed)
    others = [int(i) for i in rng.permutation(len(ds)) if ds_name == "upload" or int(i) != index]
    neg_idx = others[:N_NEGATIVES]
    ref_idx = others[: min(len(others), 32)]
    neg_views = np.stack([(loaders.views_of_array(loaders.to_uint8_hwc(ds.images[i]), aug_json, 1, seed + 1000 + i)
                           if ds_name == "yours" else
                           loaders.views(neg_name, loaders.opts_key(ds_opts), i, aug_json, 1, seed + 1000 + i))[0]
                          for i in neg_idx]) if neg_idx else np.zeros((0, *image.shape), np.uint8)

    sims_views = sims_negs = None
    invariance = None
    if entry is not None:
        from core.invariance import invariance_per_op, similarity_to

        with user_errors("embedding with the chosen model"):
            original = _chw(image)
            sims_views = similarity_to(entry.embed_images, original, _chw(views))
            sims_negs = similarity_to(entry.embed_images, original, _chw(neg_views))
            invariance = invariance_per_op(entry.embed_images, original, cfg, n_views=8, seed=seed,
                                           references=ds.images[ref_idx] if ref_idx else None)

    view_caps = [f"view {i + 1}" + (f" · sim {sims_views[i]:.2f}" if sims_views is not None else "")
                 for i in range(len(views))]
    shown = [loaders.upscale(v, DISPLAY_PX) for v in views]
    st.image(shown, caption=view_caps, width=shown[0].shape[1])  # exact size: no browser smoothing
    st.caption("Every view is one random draw of the recipe above. During training, two such views of each "
               "image form a positive pair.")

    st.subheader("A positive pair against negatives")
    pair = [views[0], views[1 % len(views)], *neg_views]
    pair_caps = ["view 1", "view 2 · positive"] + ["other image · negative"] * len(neg_views)
    if sims_views is not None:
        pair_caps[1] = f"positive · sim {float(sims_views[1 % len(views)]):.2f}"
        pair_caps[2:] = [f"negative · sim {float(s):.2f}" for s in sims_negs]
    shown = [loaders.upscale(v, DISPLAY_PX) for v in pair]
    st.image(shown, caption=pair_caps, width=shown[0].shape[1])
    st.caption("The loss pulls the two views of one image together and pushes the other images away. "
               + ("'sim' is the cosine similarity to the original under the chosen model (1 = identical)."
                  if entry is not None else
                  "Choose a trained model on the left to see how similar the model finds them."))

    if invariance is not None:
        from ui import charts

        labels = [W.OP_NAMES[op] + (" ✓" if on else "") for op, on in zip(invariance.ops, invariance.active)]
        st.subheader("What has the model learned to ignore?")
        st.plotly_chart(charts.invariance_bars(labels, list(invariance.means), invariance.baseline or 0.0),
                        key="lab.invariance_chart")
        st.caption(
            "Each bar applies one augmentation alone (8 views) and measures how close the views stay to the "
            "original. Near 1: the model is invariant to that change. Near the dotted line: the change makes "
            "the image look like a different one. ✓ marks the augmentations in the current recipe; a model "
            "usually becomes invariant to what it was trained with."
        )
