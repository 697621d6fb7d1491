"""CLIP: zero-shot classification, text/image retrieval and images + prompts on one map (core.clip).

Opens on the shipped mini-CLIP and fresh built-in shapes, so the zero-shot demo runs with no click and no
network. Everything heavy is cached, each cache bounded: the model (ui.loaders.clip_model, shared read-only),
image features, class weights and the joint map (ui.clipcache), and under them the capped disk cache of
image embeddings (core.clip.cache).
"""
from __future__ import annotations

from ui.router import require as _routed

_routed()  # a page opened before app.py ever ran: route it through app.py (ui/router.py)

import numpy as np
import streamlit as st

from ui import clipcache, clipcharts, loaders, registry, yourimages
from ui.attribution import heatmap_panel, photo_notice
from ui.widgets import user_errors
from ui import settings as S
from ui.urlstate import bind

PAGE = "clip"
SOURCES = {
    "mini": "Shipped mini-CLIP (offline)",
    "tag": "open_clip pretrained tag",
    "hub": "Hugging Face hub (hf-hub:)",
    "local": "Local folder or weights file",
}
DATASETS = {"shapes": "Built-in shapes (fresh, unseen seed)", "photos": "Built-in photos", "digits": "Digits",
            "upload": "Upload images", "yours": "Your images (.zip)"}
TEMPLATE_MODES = {"one": "One template", "custom": "Custom list", "openai": "OpenAI ImageNet (80, ensembled)"}
NAME_SOURCES = {"dataset": "From the dataset", "preset": "Preset", "typed": "Typed"}
SCALES = (1, 2, 5, 10, 20, 50, 100)
MAX_GALLERY = 24

st.title("CLIP: images and text in one space")
st.caption(
    "CLIP (Radford et al. 2021) trains an image encoder and a text encoder so that an image and its caption "
    "land close together. Classify without training (zero-shot) by comparing an image with one prompt per "
    "class, search images with words, and see both kinds of embedding on one map."
)


# ------------------------------------------------------------------------------------------ model
def _spec_from_widgets(source: str) -> str | None:
    if source == "mini":
        return "mini-clip"
    if source == "tag":
        import open_clip

        pairs = [f"{m}:{t}" for m, t in open_clip.list_pretrained()]
        return st.selectbox("Model and pretrained tag", pairs, key="clip.tag",
                            index=pairs.index("ViT-B-32:laion2b_s34b_b79k") if "ViT-B-32:laion2b_s34b_b79k" in pairs else 0,
                            help="Any pair from open_clip.list_pretrained(). Needs the network unless the weights "
                                 "are already in the local cache.")
    if source == "hub":
        return st.text_input("Hub repository", "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", key="clip.hub",
                             help="An open_clip model on the Hugging Face hub (needs the network the first time).")
    return st.text_input("Folder or weights file", "local-dir:assets/mini_clip", key="clip.local",
                         help="'local-dir:/path' (open_clip_config.json + open_clip_model.safetensors), or "
                              "'MODEL:/path/weights.safetensors' with the open_clip model name it fits.")


st.session_state.setdefault("clip._spec", "mini-clip")
with st.expander("Model", icon=":material/neurology:", expanded=False):
    from core.hosting import shared_server

    # A shared server reads no typed path (core.hosting): its "local folder" choice is not offered at all.
    source = st.radio("Where the model comes from", [k for k in S.options("clip.source") if k != "local" or not shared_server()],
                      format_func=SOURCES.get, key="clip.source",
                      horizontal=True, help="The shipped mini-CLIP works offline. Pretrained tags and hub models "
                                            "download once; with no network they fail within seconds.")
    with user_errors("choosing the model"):
        wanted = _spec_from_widgets(source)
        if st.button("Load", key="clip.load", icon=":material/download:", disabled=not wanted):
            with st.spinner(f"Loading {wanted}… (a download prints its progress in the console)"):
                loaders.clip_model(wanted)  # raises with a sentence; the old model stays on failure
            st.session_state["clip._spec"] = wanted

bundle = None
with user_errors("loading the CLIP model"):
    with st.spinner("Loading the CLIP model…"):
        bundle = loaders.clip_model(st.session_state["clip._spec"])
if bundle is None:
    st.session_state["clip._spec"] = "mini-clip"
    st.stop()

mc1, mc2 = st.columns([3, 1], vertical_alignment="center")
mc1.markdown(f":material/neurology: **{bundle.name}** · {bundle.embed_dim}-d embeddings · "
             f"{bundle.image_size} px images · learned logit scale {bundle.learned_logit_scale:.1f}")


# ------------------------------------------------------------------------------------------ images
def _default_template() -> str:
    if st.session_state.get("clip.dataset", "shapes") == "shapes":
        return "a {} shape" if st.session_state.get("clip.factor") == "colour" else "a {}"
    return "a photo of a {}."


def _reset_template() -> None:
    st.session_state["clip.template"] = _default_template()


ic1, ic2, ic3 = st.columns([2, 1, 1])
dataset_name = ic1.segmented_control("Images", S.options("clip.dataset"), format_func=DATASETS.get,
                                     **bind("clip.dataset", "default"), on_change=_reset_template,
                                     help="Shapes are generated with a seed the mini-CLIP never saw in training.")
dataset_name = dataset_name or "shapes"
images = None  # ImageSet or list of PIL images
names_for_display: list[str] = []
with user_errors("loading the images"):
    if dataset_name == "shapes":
        n = ic2.select_slider("How many", S.options("clip.n"), **bind("clip.n"),
                              help="Freshly generated shapes (seed 1; the mini-CLIP was trained on seed 0).")
        images = loaders.dataset("shapes", n=int(n), size=32, seed=1)
    elif dataset_name in ("photos", "digits"):
        images = loaders.dataset(dataset_name)
    elif dataset_name == "yours":  # a .zip of the user's (ui.yourimages); zero-shot uses its class names
        images = yourimages.source("clip.yours")
    else:
        files = st.file_uploader("Images (PNG, JPEG, WebP, …)", key="clip.upload", accept_multiple_files=True,
                                 type=["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"],
                                 help="Decoded safely (size cap, decompression-bomb guard); at most 64 at once.")
        if files:
            from core.clip import images_from_uploads

            decoded, problems = images_from_uploads([(f.name, f.getvalue()) for f in files])
            for name, why in problems:
                st.warning(f"{name}: {why}", icon=":material/warning:")
            if decoded:
                names_for_display = [name for name, _ in decoded]
                images = [img for _, img in decoded]
        else:
            st.info("Upload one or more images to classify them, or pick a built-in set above.",
                    icon=":material/upload:")

if images is None:
    st.stop()

labelled = not isinstance(images, list)
factors = images.factors if labelled else []
factor = None
if labelled:
    factor = ic3.selectbox("Label", factors, key="clip.factor", on_change=_reset_template,
                           help="Which known factor the class names describe (shapes have five).")


def _pixels(idx) -> np.ndarray:
    """uint8 (k, H, W, 3) for display."""
    idx = np.asarray(idx, dtype=int)
    if labelled:
        return loaders.to_uint8_hwc(images.images[idx])
    return np.stack([np.asarray(images[i].convert("RGB").resize((128, 128))) for i in idx]) if len(idx) else \
        np.zeros((0, 128, 128, 3), np.uint8)


feats = None
with user_errors("embedding the images"):
    feats = clipcache.image_features(bundle, images, builtin=dataset_name in ("shapes", "photos", "digits"))
if feats is None:
    st.stop()

if mc2.button("Add to my session", key="clip.register", icon=":material/add:",
              help="Lets the other pages (e.g. the Explorer) use this model's image embeddings."):
    already = [e for e in registry.entries(["clip"]) if e.payload is bundle]
    if already:
        st.toast(f"{already[0].name} is already in your session.")
    else:
        entry = registry.register_clip(bundle, imageset=images if labelled else None)
        st.toast(f"Added {entry.name} to your session.")

photo_notice(bundle, dataset_name)
tab_zs, tab_ret, tab_map = st.tabs(["Zero-shot", "Retrieval", "Images and prompts on one map"])

# ------------------------------------------------------------------------------------------ zero-shot
with tab_zs:
    c1, c2, c3 = st.columns(3)
    name_modes = list(NAME_SOURCES) if labelled else ["preset", "typed"]
    name_mode = c1.radio("Class names", name_modes, format_func=NAME_SOURCES.get, key="clip.names_from",
                         help="With the dataset's own names the page can also score the answers.")
    classnames: list[str] = []
    with user_errors("reading the class names"):
        if name_mode == "dataset":
            classnames = list(images.classes[factor])
            c1.caption(", ".join(classnames[:12]) + (" …" if len(classnames) > 12 else ""))
        elif name_mode == "preset":
            from core.clip import classname_presets

            presets = classname_presets()
            preset = c1.selectbox("Preset", list(presets), key="clip.preset",
                                  help="CIFAR-10 and ImageNet names (ImageNet's from open_clip.zero_shot_metadata).")
            classnames = presets[preset]
        else:
            typed = c1.text_area("One class per line (or comma-separated)", **bind("clip.typed"))
            from core.clip import parse_classnames

            classnames = parse_classnames(typed)

    # Assigned (not setdefault) on every run: a value set while the box was hidden (a new image source resets
    # it) otherwise stays in the session but never reaches the browser, which shows an empty box.
    st.session_state["clip.template"] = st.session_state.get("clip.template", _default_template())
    tmode = c2.radio("Prompt templates", list(TEMPLATE_MODES), format_func=TEMPLATE_MODES.get, key="clip.tmode",
                     help="Each class name is put into each template ('a photo of a {}.'). With several templates "
                          "their embeddings are normalised, averaged and renormalised (prompt ensembling).")
    templates: list[str] = []
    with user_errors("reading the templates"):
        if tmode == "one":
            templates = [c2.text_input("Template ({} is the class name)", key="clip.template")]
        elif tmode == "custom":
            text = c2.text_area("One template per line", "a {}\na photo of a {}.\na drawing of a {}.",
                                key="clip.templates")
            templates = [t for t in text.splitlines() if t.strip()]
        else:
            from core.clip import template_set

            templates = template_set("openai")
            c2.caption(f"{len(templates)} templates, e.g. “{templates[0]}”, “{templates[1]}”.")

    scale = c3.select_slider("Logit scale (1 / temperature)", S.options("clip.scale"), **bind("clip.scale"),
                             help="Probabilities are softmax(scale × cosine similarity). CLIP learned ~100: sharp. "
                                  "Lower it and the probabilities flatten; the ranking stays the same.")
    topk = c3.select_slider("Top-k shown", S.options("clip.topk"), **bind("clip.topk"))

    result = single = w = None
    with user_errors("classifying"):
        from core.clip import accuracy_report, zero_shot

        w = clipcache.zero_shot_weights(bundle, bundle.fingerprint, tuple(classnames), tuple(templates))
        result = zero_shot(bundle, feats, w, logit_scale=float(scale))
        if len(w.templates) > 1:
            single = zero_shot(bundle, feats, w.single(0), logit_scale=float(scale))

    if result is not None:
        top_idx, top_p = result.top_k(int(topk))
        n_img = len(feats)
        left, right = st.columns([1, 2])
        pick = left.number_input("Image", 0, n_img - 1, 0, key="clip.image",
                                 help="Which image's probabilities to show.") if n_img > 1 else 0
        left.image(loaders.upscale(_pixels([pick])[0], 192), width=192,
                   caption=(names_for_display[pick] if names_for_display else
                            f"true: {images.classes[factor][images.labels[factor][pick]]}" if labelled else None))
        bars = clipcharts.topk_bars(top_p[pick], [w.classnames[i] for i in top_idx[pick]], scale)
        right.plotly_chart(bars, key="clip.chart.topk", width="stretch")
        heatmap_panel(bundle, images, int(pick), feats[pick], w, int(top_idx[pick][0]), float(scale),
                      shapes=dataset_name == "shapes")

        show = list(range(min(n_img, 12)))
        cols = st.columns(6)
        pix = _pixels(show)
        for j, i in enumerate(show):
            guess = w.classnames[top_idx[i][0]]
            mark = ""
            if name_mode == "dataset":
                mark = " ✓" if top_idx[i][0] == images.labels[factor][i] else " ✗"
            cols[j % 6].image(loaders.upscale(pix[j], 96), caption=f"{i}: {guess} {top_p[i][0]:.0%}{mark}",
                              width="stretch")

        if name_mode == "dataset":
            st.subheader("How good is it?")
            y = images.labels[factor]
            rep = accuracy_report(result.predictions, y, len(w.classnames))
            m1, m2, m3 = st.columns(3)
            m1.metric("Accuracy", f"{rep['accuracy']:.1%}", help="Share of images whose top class is right. "
                      f"Chance: {1 / len(w.classnames):.0%}.")
            if single is not None:
                rep1 = accuracy_report(single.predictions, y, len(w.classnames))
                gain = rep["accuracy"] - rep1["accuracy"]
                m2.metric("One template only", f"{rep1['accuracy']:.1%}",
                          help=f"With just “{w.templates[0]}”.")
                m3.metric("Ensembling gain", f"{gain:+.1%}", delta=f"{gain:+.1%}",
                          help=f"Averaging {len(w.templates)} templates vs the first one alone.")
            else:
                m2.caption("Choose several templates (custom list or OpenAI's) to see what ensembling adds.")
            pc1, pc2 = st.columns(2)
            pc1.plotly_chart(clipcharts.per_class_bars(w.classnames, rep["per_class"]), key="clip.chart.per_class",
                             width="stretch")
            cm = rep["confusion"]
            event = pc2.plotly_chart(clipcharts.confusion_heatmap(cm, w.classnames), key="clip.chart.confusion",
                                     width="stretch", on_select="rerun", selection_mode="points")
            from core.clip import cell_images, worst_confusion

            worst = worst_confusion(cm)
            points = (event or {}).get("selection", {}).get("points", []) if event else []
            if points:
                names_idx = {c: i for i, c in enumerate(w.classnames)}
                p0 = points[0]
                if p0.get("y") in names_idx and p0.get("x") in names_idx:
                    st.session_state["clip.cm_true"] = p0["y"]
                    st.session_state["clip.cm_pred"] = p0["x"]
            s1, s2 = st.columns(2)
            t_name = s1.selectbox("True class", w.classnames, index=worst[0], key="clip.cm_true")
            p_name = s2.selectbox("Predicted as", w.classnames, index=worst[1], key="clip.cm_pred")
            ti, pi = w.classnames.index(t_name), w.classnames.index(p_name)
            hits = cell_images(y, result.predictions, ti, pi)
            word = "right" if ti == pi else "mistaken"
            st.caption(f"{len(hits)} images of **{t_name}** classified as **{p_name}** ({word}).")
            if len(hits):
                hcols = st.columns(8)
                hp = _pixels(hits[:MAX_GALLERY])
                for j, i in enumerate(hits[:MAX_GALLERY]):
                    hcols[j % 8].image(loaders.upscale(hp[j], 96), caption=f"{i}: {result.probs[i, pi]:.0%}",
                                       width="stretch")

# ------------------------------------------------------------------------------------------ retrieval
with tab_ret:
    from core.clip import combine_queries, embed_texts, search

    r1, r2 = st.columns([1, 2])
    mode = r1.radio("Search with", ["text", "image"], key="clip.ret_mode",
                    format_func={"text": "Text → image", "image": "Image → image"}.get, horizontal=True)
    k = r1.select_slider("Results", S.options("clip.ret_k"), **bind("clip.ret_k"))
    default_query = "a red circle" if dataset_name == "shapes" else "a photo of a cat"
    with user_errors("searching"):
        terms = []
        exclude = None
        if mode == "text":
            q = r2.text_input("Find images of…", default_query, key="clip.query")
            terms.append((1.0, embed_texts(bundle, [q])[0]))
            formula = f"“{q}”"
        else:
            qi = r2.number_input("Query image", 0, len(feats) - 1, 0, key="clip.query_image")
            terms.append((1.0, feats[qi]))
            exclude = int(qi)
            formula = f"image {qi}"
            r1.image(loaders.upscale(_pixels([qi])[0], 96), caption=f"query image {qi}", width=96)
        a1, a2 = r2.columns(2)
        plus = a1.text_input("+ text (optional)", **bind("clip.plus"), help="Query arithmetic: add a concept, "
                             "e.g. image of a red circle + “a blue shape” − “a red shape”.")
        minus = a2.text_input("− text (optional)", **bind("clip.minus"))
        for sign, text in ((1.0, plus), (-1.0, minus)):
            if text.strip():
                terms.append((sign, embed_texts(bundle, [text])[0]))
                formula += f" {'+' if sign > 0 else '−'} “{text.strip()}”"
        query = combine_queries(terms)
        st.caption(f"Query: {formula}, normalised; results ranked by cosine similarity.")
        idx, sims = search(feats, query, k=int(k), exclude=exclude)
        gcols = st.columns(8)
        gp = _pixels(idx)
        for j, (i, s) in enumerate(zip(idx, sims)):
            label = f" · {images.classes[factor][images.labels[factor][i]]}" if labelled else ""
            gcols[j % 8].image(loaders.upscale(gp[j], 96), caption=f"#{j + 1} {s:.3f}{label}", width="stretch")

# ------------------------------------------------------------------------------------------ shared map
with tab_map:
    if w is None:
        st.info("Choose class names and templates on the Zero-shot tab first.")
    else:
        m1, m2 = st.columns([1, 3])
        method = m1.radio("Projection", ["pca", "umap"], key="clip.map_method", format_func=str.upper,
                          help="PCA is instant and keeps distances' big picture; UMAP keeps neighbours.")
        jm = None
        with user_errors("projecting the embeddings"):
            jm = clipcache.joint_map(feats, w.per_template, method)
    if w is not None and jm is not None:
        m1.metric("Modality gap", f"{jm.gap:.3f}", help="Distance between the centroid of the image embeddings and "
                  "the centroid of the prompt embeddings (Liang et al. 2022). CLIP keeps the two kinds in separate "
                  "cones: 0 would mean they share one centre; 2 is the most two unit-vector centroids can differ.")
        m1.caption(f"{len(jm.keep)} images (circles) and {len(jm.prompt_xy)} prompts (stars).")
        if labelled and name_mode == "dataset":
            colour_of = images.labels[factor][jm.keep]
            img_text = [images.classes[factor][c] for c in colour_of]
        else:
            colour_of = result.predictions[jm.keep] if result is not None else np.zeros(len(jm.keep), int)
            img_text = [f"predicted {w.classnames[c]}" for c in colour_of]
        m2.plotly_chart(clipcharts.joint_map_figure(jm, colour_of, img_text, w.classnames, method),
                        key="clip.chart.map", width="stretch")
