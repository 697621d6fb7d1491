"""The CLIP page's "why did it answer that?" panel: heatmaps side by side, their trust figure on shapes, and the
prompt's words coloured by leave-one-word-out. Compute lives in core.attribution; this module draws."""
from __future__ import annotations

import html
from typing import Any

import numpy as np
import streamlit as st

from ui import loaders
from ui.widgets import user_errors

TRUST_SHAPES = 40  # fresh shapes the trust figure is measured on (seed 3: no test or benchmark uses it)
TRUST_SEED = 3


def overlay(pixels: np.ndarray, heat: np.ndarray, side: int = 192) -> np.ndarray:
    """A map over its image: positive heat in red, negative in blue, opacity by |heat| / max |heat|, over the
    image in grey. Shape: (S, S, 3) uint8, (S, S) -> (side, side, 3) uint8 (nearest-neighbour upscale)."""
    grey = pixels.astype(np.float32).mean(axis=2, keepdims=True).repeat(3, axis=2) * 0.6 + 40
    h = np.asarray(heat, dtype=np.float32)
    top = float(np.abs(h).max())
    a = (np.abs(h) / top if top > 0 else np.zeros_like(h))[..., None] * 0.85
    colour = np.where(h[..., None] >= 0, np.array([230, 30, 20], np.float32), np.array([30, 90, 230], np.float32))
    out = np.clip(grey * (1 - a) + colour * a, 0, 255).astype(np.uint8)
    return loaders.upscale(out, side)


def photo_notice(bundle: Any, dataset_name: str) -> None:
    """One line on what the shipped mini-CLIP can know, when it is shown anything but shapes."""
    if bundle.spec == "mini-clip" and dataset_name != "shapes":
        st.info("The shipped mini-CLIP was trained only on coloured shapes at 32 px: it knows shape and colour words "
                "(circle, star, red, …) and nothing about cats, coffee or rockets, so on photos its answers are "
                "guesses. For real photos load a pretrained model under **Model** (e.g. ViT-B-32 / "
                "laion2b_s34b_b79k): it needs the internet once, then the weights stay cached for offline use.",
                icon=":material/info:")


@st.cache_data(max_entries=8, show_spinner=f"Measuring both methods on {TRUST_SHAPES} fresh shapes…")
def _trust(_bundle: Any, fingerprint: str, target: str, scale: float):
    from core.attribution import trust_report

    return trust_report(_bundle, n=TRUST_SHAPES, seed=TRUST_SEED, target=target, logit_scale=scale)


@st.cache_data(max_entries=16, show_spinner="Occluding patches… (a big model takes a while on a CPU)")
def _maps(_bundle: Any, fingerprint: str, x: np.ndarray, text_rows: np.ndarray, class_index: int,
          methods: tuple[str, ...], target: str, scale: float) -> dict[str, np.ndarray]:
    """core.attribution.heatmaps, cached by model, input pixels, class texts (C, D) and settings, so a rerun for
    another widget does not occlude again."""
    import torch

    from core.attribution import heatmaps

    return heatmaps(_bundle, torch.from_numpy(x).to(_bundle.device), text_rows, class_index, methods=list(methods),
                    target=target, logit_scale=scale)


def _trust_panel(bundle: Any, names: dict[str, str], target: str, scale: float) -> None:
    st.markdown("**Can these maps be trusted?** On fresh built-in shapes the true object is known pixel by pixel, "
                "so each method can be scored: the share of its positive heat on the shape (energy pointing game) "
                "and how often its hottest pixel is on the shape (pointing game).")
    key = (bundle.fingerprint, target, float(scale))
    if st.session_state.get("clip._trust_key") != key and not st.button(
            f"Measure on {TRUST_SHAPES} fresh shapes", key="clip.trust", icon=":material/rule:",
            help="Zero-shot on the shape names ('a {}'), then both methods on every shape the model got right."):
        return
    with user_errors("measuring the heatmaps"):
        rep = _trust(bundle, bundle.fingerprint, target, float(scale))
        st.session_state["clip._trust_key"] = key
        labels = {**names, "random": "Random heat", "centre": "Centre blob"}
        cols = st.columns(len(rep.energy))
        for col, (m, e) in zip(cols, rep.energy.items()):
            col.metric(labels.get(m, m), f"{e:.2f}", help=f"Share of the positive heat on the shape; its maximum "
                       f"was on the shape in {rep.hit[m]:.0%} of the images.")
            col.caption(f"max on the shape: {rep.hit[m]:.0%}")
        summary = "; ".join(f"{labels.get(m, m).lower()}: {e:.2f}" for m, e in rep.energy.items())
        st.caption(f"{summary} of the heat on the shape, over the {rep.n_correct} of {rep.n_images} fresh shapes the "
                   "model classified right. Random heat is the floor; the centre blob knows nothing about the image, "
                   "yet scores well because shapes sit near the centre.")


def _words(bundle: Any, image_features: np.ndarray, default_prompt: str, scale: float) -> None:
    from core.attribution import word_importance

    prompt = st.text_input("Prompt to take apart, word by word", default_prompt, key="clip.why_prompt",
                           help="Each word is left out in turn; the colour is how far the image's logit "
                                "(scale × cosine) falls without it. Red: the word helped; blue: it hurt.")
    with user_errors("scoring the words"):
        words, drops, full = word_importance(bundle, image_features, prompt, logit_scale=scale)
        top = float(np.abs(drops).max()) or 1.0
        spans = []
        for word, d in zip(words, drops):
            a = 0.15 + 0.75 * abs(float(d)) / top
            rgb = "230,30,20" if d >= 0 else "30,90,230"
            spans.append(f'<span style="background: rgba({rgb},{a:.2f}); padding: 2px 5px; border-radius: 4px; '
                         f'margin-right: 3px" title="{float(d):+.2f}">{html.escape(word)}</span>')
        st.markdown(" ".join(spans), unsafe_allow_html=True)
        best = int(np.argmax(np.abs(drops)))
        st.caption(f"Logit of the whole prompt: {full:.2f}. Leaving out “{words[best]}” moves it most "
                   f"({-float(drops[best]):+.2f}).")


def heatmap_panel(bundle: Any, images: Any, pick: int, image_features: np.ndarray, weights: Any, predicted: int,
                  scale: float, *, shapes: bool = False) -> None:
    """Heatmaps for image ``pick`` of ``images`` (an ImageSet or a list of PIL images) and a chosen class: the
    model's view, occlusion and the tower's gradient method side by side; on built-in shapes (``shapes``) each
    map's share of heat on the shape, the trust figure and the image's caption as the prompt to take apart."""
    from core.attribution import METHOD_NAMES, display_pixels, gradient_method, model_inputs, \
        occlusion_defaults, pointing_game
    from core.data import shape_masks

    labelled = not isinstance(images, list)
    image = images.images[pick:pick + 1] if labelled else images[pick]
    mask = shape_masks(images.subset([pick]))[0] >= 0.5 if shapes else None
    prompt = images.captions[pick] if shapes and images.captions else None

    st.subheader("Why this answer?")
    g = gradient_method(bundle)
    c1, c2 = st.columns(2)
    cls = c1.selectbox("Explain the class", weights.classnames, index=int(predicted), key="clip.why_class",
                       help="The top answer by default; pick another class to see what speaks for it.")
    target = c2.radio("Score to explain", ["probability", "similarity"], key="clip.why_target", horizontal=True,
                      help="Probability: the class's softmax over all classes (occlusion records its drop; the "
                           "gradient method uses its log). Similarity: the cosine of image and class prompt alone.")
    names = {"occlusion": "Occlusion"}
    if g:
        names[g[0]] = METHOD_NAMES[g[0]]
    with user_errors("drawing the heatmaps"):
        x = model_inputs(bundle, image)
        maps = _maps(bundle, bundle.fingerprint, x.cpu().numpy(), np.ascontiguousarray(weights.weights.T),
                     weights.classnames.index(cls), tuple(names), target, float(scale))
        view = display_pixels(bundle, x)[0]
        side = bundle.image_size
        cols = st.columns(len(names) + 1)
        cols[0].image(loaders.upscale(view, 192), width=192, caption=f"What the model sees ({side} px)")
        patch, stride = occlusion_defaults(side)
        details = {"occlusion": f"grey patches of {patch} px, every {stride} px"}
        if g:
            details[g[0]] = g[1]
        for col, (m, batch) in zip(cols[1:], maps.items()):
            heat = batch[0]
            cap = f"{names[m]}{':' if m == 'occlusion' else ''} {details[m]}"
            if mask is not None and mask.shape == heat.shape:
                share = float(pointing_game(heat[None], mask[None])["energy"][0])
                cap += f" · {share:.0%} of its heat on the shape"
            col.image(overlay(view, heat), width=192, caption=cap)
        note = "Red: hiding or weakening it lowers the score; blue: it raises it. "
        if not g:
            note += ("This image tower has no gradient method here (Grad-CAM needs a ResNet tower, LeGrad an "
                     "open_clip ViT); occlusion works on any model.")
        else:
            if g[0] == "gradcam" and side <= 64:
                note += (f"At {side} px this ResNet tower's last stages are {side // 16} × {side // 16} and "
                         f"{side // 32} × {side // 32}, so Grad-CAM looks {g[1]}, the deepest stage with resolution. ")
            note += "Methods disagree: check each against the trust figure before believing it."
        st.caption(note)
    if shapes:
        _trust_panel(bundle, names, target, float(scale))
    _words(bundle, image_features, prompt or weights.templates[0].format(cls), float(scale))
