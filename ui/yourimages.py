"""The "your images" source, built once and offered wherever images are chosen (Train, Augmentation Lab, Explorer,
CLIP, the Explorer's Compare view).

:func:`source` draws the whole thing: a picker over the image sets of this session, a ``.zip`` uploader with its
caps in its label, a progress bar while the archive decodes, a sentence for every file it skipped, and, on a
laptop, a folder path. A loaded set joins the session registry (``ui.registry``, kind ``"images"``) with its
name, counts per class and a thumbnail strip, so every page sees the same sets. The reading is
:mod:`core.owndata` (over ``core.data.load_dataset``); this module only draws and remembers.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from ui import registry

KIND = "images"
ADD = "Add a .zip…"
THUMBS = 12
CHOICE = "yours"  # the dataset pickers' value for this source
CHOICE_HELP = "yours: a .zip of your own images (one folder per class)"


def choice_label(value: str) -> str:
    """format_func of a dataset picker that offers this source."""
    return "your images (.zip)" if value == CHOICE else str(value)


# ------------------------------------------------------------------------------------------ registry
def image_sets() -> list[registry.Entry]:
    return registry.entries([KIND])


def register_images(ds: Any) -> registry.Entry:
    """Put an ImageSet in the session registry (the same set loaded twice is kept once)."""
    from core.data import fingerprint

    fp = fingerprint(ds)
    for e in image_sets():
        if fingerprint(e.payload) == fp:
            return e
    n_classes = len(ds.classes[ds.factors[0]])
    entry = registry.Entry(name=ds.name, kind=KIND, payload=ds, image_size=ds.image_size, dataset_name=ds.name,
                           source=f"{len(ds):,} images, {n_classes} classes, {ds.image_size} px (your upload)")
    return registry.register(entry)


def skip_sentence(file: str, why: str) -> str:
    """One skipped file and why, as a sentence (core.data records the reason as a clause about its group)."""
    clauses = {"that are not images (by their extension)": "is not an image (by its extension)",
               "that are not readable images": "is not a readable image (damaged, cut short or not an image)",
               "that are too large": "is over the pixel cap (a possible decompression bomb)",
               "that could not be opened": "could not be opened",
               "outside any class sub-folder": "lies outside any class folder, so it has no label",
               "with no image path": "has no image path", "with an empty caption or label": "has an empty label",
               "whose path leaves the table's folder": "points outside the archive", "that do not exist":
               "names a file the archive does not hold"}
    text = clauses.get(why) or why.replace("over the", "is over the", 1)
    return f"`{file}` was skipped: it {text}."


# ------------------------------------------------------------------------------------------ drawing
def summary(ds: Any) -> None:
    """Name, counts per class, a thumbnail strip, and any reason the set is hard to learn from."""
    from core.owndata import class_counts, learnability
    from ui.loaders import to_uint8_hwc, upscale

    counts = class_counts(ds)
    shown = ", ".join(f"{c} {k:,}" for c, k in list(counts.items())[:12]) + (" …" if len(counts) > 12 else "")
    st.caption(f"**{ds.name}** · {len(ds):,} images · {ds.image_size} px · {len(counts)} classes: {shown}")
    rng = np.random.default_rng(0)
    idx = np.sort(rng.permutation(len(ds))[:THUMBS])
    strip = np.concatenate([upscale(to_uint8_hwc(ds.images[i]), 48) for i in idx], axis=1)  # one image, one file
    st.image(strip, width=strip.shape[1])
    for line in learnability(ds):
        st.warning(line, icon=":material/warning:")
    if ds.skipped_files:
        with st.expander(f"{len(ds.skipped_files):,} files skipped", icon=":material/block:"):
            st.markdown("\n".join(f"- {skip_sentence(f, why)}" for f, why in ds.skipped_files[:500]))
            if len(ds.skipped_files) > 500:
                st.caption(f"… and {len(ds.skipped_files) - 500:,} more.")
    for note in ds.notes:
        if not note.startswith("Skipped "):
            st.caption(note)


def _load(key: str, load) -> None:
    bar = st.progress(0.0, text="Reading the archive…")

    def progress(done: int, total: int) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"Decoding images… {done:,} / {total:,}")

    try:
        ds = load(progress)
    finally:
        bar.empty()
    entry = register_images(ds)
    st.session_state[f"{key}._pending"] = entry.name  # picked on the rerun, before the selectbox is drawn
    st.session_state[f"{key}._message"] = f"Added **{entry.name}** ({len(ds):,} images) to your session."


def _on_pick(key: str) -> None:
    st.session_state.pop(f"{key}._message", None)


def source(key: str, *, help: str | None = None) -> Any:
    """The "your images" widget. Returns the chosen :class:`core.data.ImageSet`, or None (with a hint shown).

    ``key`` namespaces the widgets (e.g. ``"train.yours"``); the choice is shared through the registry, so a set
    added on one page is offered on every other.
    """
    from core import owndata
    from core.hosting import shared_server
    from ui.widgets import user_errors

    names = [e.name for e in image_sets()]
    options = [*names, ADD]
    pending = st.session_state.pop(f"{key}._pending", None)
    if pending in options:
        st.session_state[f"{key}.pick"] = pending
    if st.session_state.get(f"{key}.pick") not in options:
        st.session_state.pop(f"{key}.pick", None)
    choice = st.selectbox("Your image set", options, key=f"{key}.pick", on_change=_on_pick, args=(key,),
                          help=help or "Image sets you added in this session, on any page. Add another below.")
    if choice == ADD:
        up = st.file_uploader(f"A .zip of images: {owndata.caps_sentence()}", type=["zip"], key=f"{key}.zip",
                              max_upload_size=owndata.caps()["bytes"] // 2**20,
                              help="One sub-folder per class (cats/, dogs/, …), or the images with a .csv inside "
                                   "naming each one's label (columns image, label). Kept in this session only.")
        size = st.select_slider("Image size", owndata.OWN_SIZES, value=owndata.DEFAULT_OWN_SIZE, key=f"{key}.size",
                                format_func=lambda v: f"{v} px",
                                help="Each image is centre-cropped to a square and resized to this. 32 px trains "
                                     "fastest on a CPU.")
        if up is not None and st.session_state.get(f"{key}._last") != up.file_id:
            with user_errors("reading your images"):
                st.session_state[f"{key}._last"] = up.file_id
                data, name = up.getvalue(), up.name
                _load(key, lambda p: owndata.load_zip(data, name=name, size=int(size), progress=p))
                st.rerun()
        if not shared_server():
            with st.form(f"{key}.folder_form", border=False):
                folder = st.text_input("…or a folder on this computer", key=f"{key}.folder",
                                       placeholder="/home/me/pictures/pets",
                                       help="A folder with one sub-folder of images per class.")
                if st.form_submit_button("Load the folder", key=f"{key}.folder_go") and folder:
                    with user_errors("reading the folder"):
                        _load(key, lambda p: owndata.load_folder(folder, size=int(size), progress=p))
                        st.rerun()
        return None
    msg = st.session_state.get(f"{key}._message")
    if msg:
        st.success(msg, icon=":material/check_circle:")
    entry = registry.get(choice)
    if entry is None:
        return None
    summary(entry.payload)
    return entry.payload


# ------------------------------------------------------------------------------------------ Train page
def train_source(key: str) -> Any:
    """:func:`source` for the Train page, plus its defaults: when a set is newly chosen the batch size is set to
    one that fits it (core.owndata.training_defaults; the augmentations already follow the dataset picker to the
    photo recipe). Returns the ImageSet or None."""
    from core.data import fingerprint
    from core.owndata import training_defaults

    ds = source(key)
    if ds is None:
        return None
    d = training_defaults(ds)
    if st.session_state.get(f"{key}._defaults_for") != fingerprint(ds):
        st.session_state[f"{key}._defaults_for"] = fingerprint(ds)
        if "train.batch_size" not in st.session_state or st.session_state["train.batch_size"] > d["batch_size"]:
            st.session_state["train.batch_size"] = d["batch_size"]
    st.caption(f"Defaults for {len(ds):,} images: batch {d['batch_size']}, the photo augmentation recipe, a "
               "held-out fifth that keeps every class.")
    return ds


def data_key(ds: Any) -> str | None:
    """What identifies the chosen data (its fingerprint for the user's own sets, its spec for built-ins)."""
    import json

    from core.data import dataset_identity

    if ds is None:
        return None
    ident = dataset_identity(ds)
    return ident.get("fingerprint") or json.dumps(ident, sort_keys=True, default=str)


def train_settings(ds: Any) -> dict[str, Any]:
    """Settings that pick ``ds`` on the Train page when it is the user's own set (called from a callback)."""
    from core.data import dataset_identity_is_builtin

    if ds is None or dataset_identity_is_builtin(ds):
        return {}
    entry = register_images(ds)
    st.session_state["train.yours.pick"] = entry.name
    return {"train.dataset": CHOICE}


# ------------------------------------------------------------------------------------------ Explorer
UNTRAINED = "Untrained encoder (a baseline)"


@st.cache_resource(max_entries=1, show_spinner=False)
def _untrained_encoder():
    """The Train page's default encoder (fast_cnn) at its seed-0 initialisation: shared, read-only, eval mode."""
    import torch

    from core.models import EncoderConfig, build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(EncoderConfig(arch="fast_cnn"), device="cpu").eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def untrained_entry() -> registry.Entry:
    """An unregistered entry that embeds with the untrained encoder: what any training has to beat."""
    model = _untrained_encoder()

    def embed(x):
        return model.embed(x, space="encoder", normalize=True).float().cpu().numpy()

    return registry.Entry(name=UNTRAINED, kind="untrained", source="fast_cnn at its seed-0 initialisation",
                          embed_images=embed, created=0.0)


def explorer_source(prefix: str):
    """The Explorer's "Your images" source: an image set and the model that embeds it (an untrained encoder
    until the user picks one). Returns a :class:`ui.explorer.Space`, or None."""
    ds = source(f"{prefix}.yours")
    if ds is None:
        return None
    model = registry.pick("Embed them with", f"{prefix}.yours_model", kinds=("trained", "clip"),
                          accept=lambda e: e.embed_images is not None, none_label=UNTRAINED,
                          help="A model you trained (on these images or others) or a CLIP model from the CLIP "
                               "page. The untrained encoder is the baseline training has to beat.")
    return model_space(ds, model or untrained_entry())


def model_space(ds: Any, model: registry.Entry):
    """``model``'s embeddings of an image set as an Explorer :class:`ui.explorer.Space` (cached in the session):
    galleries, hover and neighbours show the user's images with their labels."""
    import torch

    from core.data import fingerprint
    from core.embed import EmbeddingSet
    from ui import explorer as X
    from ui.cache import store

    def make():
        bar = st.progress(0.0, text=f"Embedding {len(ds):,} images with {model.name}…")
        out = []
        for start in range(0, len(ds), 256):
            x = ds.images[start:start + 256].float().div_(255.0)
            if model.kind == "trained" and model.image_size and x.shape[-1] != model.image_size:
                x = torch.nn.functional.interpolate(x, size=(model.image_size,) * 2, mode="bilinear",
                                                    antialias=True, align_corners=False)
            out.append(np.asarray(model.embed_images(x), dtype=np.float32))
            bar.progress(min(start + 256, len(ds)) / len(ds), text=f"Embedding… {min(start + 256, len(ds)):,} / "
                                                                   f"{len(ds):,}")
        bar.empty()
        es = EmbeddingSet(np.concatenate(out), list(ds.ids), dict(ds.labels), {k: list(v) for k, v in
                          ds.classes.items()}, f"{model.name} on your images {ds.name}")
        tm = model.payload if model.kind == "trained" else None
        return X.Space(f"{model.name} on {ds.name}", es, images=X.images_hwc(ds), texts=ds.captions,
                       model=getattr(tm, "model", None) if tm is not None and ds.image_size == model.image_size
                       else None, imageset=ds, augment=getattr(getattr(tm, "cfg", None), "augment", None))

    # the session's bounded store (ui.cache); the Compare view holds two at once
    return store().get_or_make(("yourimages.space", fingerprint(ds), model.name, model.created), make)


def compare_options(space: Any) -> dict[str, Any]:
    """For the Explorer's Compare view: every other model of this session on the same image set (same ids), so
    "my model vs CLIP vs untrained" on the user's own images is one pick."""
    ds = getattr(space, "imageset", None)
    if ds is None or not any(e.payload is ds for e in image_sets()):
        return {}
    out = {} if space.name.startswith(f"{UNTRAINED} on ") else {
        f"{UNTRAINED} on {ds.name}": (lambda: model_space(ds, untrained_entry()))}
    for m in registry.entries(["trained", "clip"]):
        if m.embed_images is not None and not space.name.startswith(f"{m.name} on "):
            out[f"{m.name} on {ds.name}"] = (lambda m=m: model_space(ds, m))
    return out


# ------------------------------------------------------------------------------------------ checkpoints
def checkpoint_identity(path) -> dict | None:
    """The dataset identity a checkpoint file records (core.data.dataset_identity), read from its header only."""
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            value = json.loads((f.metadata() or {}).get("dataset", "null"))
    except Exception:  # noqa: BLE001 - Trainer.load gives the sentence for an unreadable file
        return None
    return value if isinstance(value, dict) else None


def open_checkpoint(path, chosen: Any, *, anyway: bool = False) -> tuple[Any, str, str]:
    """Open a checkpoint, never on other data silently. Returns (trainer or None, kind, sentence):

    - a built-in it may name: opened on it ("success");
    - own data, and ``chosen`` is that data (same fingerprint): opened on it ("success");
    - otherwise, unless ``anyway``: not opened ("ask"), the sentence says which data it wants;
    - ``anyway``: opened on ``chosen`` with a sentence that says the data differ ("different").
    """
    from core import train as T
    from core.data import describe_identity, same_data

    try:
        return T.Trainer.load(path), "success", ""
    except T.CheckpointNeedsDataset as err:
        identity = checkpoint_identity(path) or {}
        wanted = describe_identity(identity) if identity.get("name") == "own" else "the data it was trained on"
        if chosen is not None and same_data(identity, chosen):
            return T.Trainer.load(path, chosen), "success", f"It opened on **{chosen.name}**, the data it was " \
                                                            "trained on (the fingerprints match)."
        if not anyway or chosen is None:
            return None, "ask", (f"{err} Add that data under **Data → your images** (the fingerprint tells it "
                                 "apart from any other), and it opens by itself.")
        return T.Trainer.load(path, chosen), "different", (
            f"It was opened on **{chosen.name}**, which is **different data** from {wanted}: its held-out figures "
            "and maps are about this data, and continuing trains it on this data.")
