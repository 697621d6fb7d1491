"""The session registry: every model a user trained, loaded CLIP model and uploaded embedding file, by name.

Any page picks "which embeddings" from one selector (:func:`pick`). Entries live in this user's
``st.session_state`` only. A trained model is registered as a frozen copy (its own weights, eval mode), so
continuing to train the live model never changes what was registered.

No torch at module level: the home page lists the registry on the start path.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import streamlit as st

_STATE_KEY = "registry"
KINDS = {"trained": "trained model", "clip": "CLIP model", "embeddings": "embedding file", "text": "text model",
         "images": "image set"}  # images: an ImageSet the user brought (ui.yourimages); it has no embeddings
EMBEDDING_KINDS = tuple(k for k in KINDS if k != "images")


@dataclass
class Entry:
    """One registered thing.

    ``embed_images`` (optional) maps a float image batch (N, C, H, W) in [0, 1] to L2-normalised vectors
    (N, D) as numpy; ``image_size`` is the side it expects. ``make_embeddings`` builds the entry's
    :class:`core.embed.EmbeddingSet` on first use.
    """

    name: str
    kind: str  # one of KINDS
    source: str  # human description, e.g. "SimCLR (NT-Xent) · small_cnn on shapes, step 200"
    payload: Any = None  # trained: TrainedModel; clip: a ClipBundle; embeddings: the EmbeddingSet;
    # text: a sentence-transformers model (eval mode, read-only)
    image_size: int | None = None
    dataset_name: str | None = None
    embed_images: Callable[[Any], Any] | None = None
    make_embeddings: Callable[[], Any] | None = None
    created: float = field(default_factory=time.time)
    _embeddings: Any = None

    def embeddings(self):
        """The entry's EmbeddingSet (computed once)."""
        if self._embeddings is None and self.make_embeddings is not None:
            self._embeddings = self.make_embeddings()
        return self._embeddings


@dataclass
class TrainedModel:
    """What a finished or stopped training leaves behind (a copy, independent of the live trainer)."""

    model: Any  # core.models.ContrastiveModel, eval mode, no grad
    cfg: Any  # core.train.TrainConfig
    dataset: Any  # core.data.ImageSet the run used
    heldout: Any  # its held-out split
    step: int
    history: list
    evals: list
    snapshots: list = field(default_factory=list)  # core.train.Snapshot: probe features every few steps
    probe: Any = None  # the held-out images the snapshots embed


def entries(kinds: Sequence[str] | None = None) -> list[Entry]:
    reg: dict[str, Entry] = st.session_state.setdefault(_STATE_KEY, {})
    return [e for e in reg.values() if kinds is None or e.kind in kinds]


def get(name: str | None) -> Entry | None:
    if not name:
        return None
    return st.session_state.setdefault(_STATE_KEY, {}).get(name)


def unique_name(base: str) -> str:
    reg: dict[str, Entry] = st.session_state.setdefault(_STATE_KEY, {})
    if base not in reg:
        return base
    i = 2
    while f"{base} ({i})" in reg:
        i += 1
    return f"{base} ({i})"


def register(entry: Entry) -> Entry:
    """Add ``entry`` under a unique version of its name and return it."""
    reg: dict[str, Entry] = st.session_state.setdefault(_STATE_KEY, {})
    entry.name = unique_name(entry.name)
    reg[entry.name] = entry
    return entry


def remove(name: str) -> None:
    st.session_state.setdefault(_STATE_KEY, {}).pop(name, None)


# ------------------------------------------------------------------------------------------ builders
def register_trainer(trainer: Any, *, label: str | None = None) -> Entry:
    """Freeze the trainer's current model into a registry entry (deep copy, eval mode)."""
    import copy

    import torch

    from core.embed import embed_imageset

    # Called only while no thread is stepping this trainer (ui.jobs registers finished / stopped jobs).
    model = copy.deepcopy(trainer.model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    frozen = TrainedModel(model=model, cfg=trainer.cfg, dataset=trainer.dataset, heldout=trainer.heldout,
                          step=trainer.step_count, history=list(trainer.history), evals=list(trainer.evals),
                          snapshots=list(trainer.snapshots), probe=trainer.probe)
    source = trainer.describe()

    def embed_images(x: torch.Tensor):
        return model.embed(x, space="encoder", normalize=True).float().cpu().numpy()

    def make_embeddings():
        emb = embed_imageset(model, frozen.heldout, space="encoder")
        emb.source = f"{source}, encoder space (held-out images)"
        return emb

    entry = Entry(
        name=label or short_name(trainer),
        kind="trained",
        source=source,
        payload=frozen,
        image_size=int(trainer.dataset.image_size),
        dataset_name=trainer.dataset.name,
        embed_images=embed_images,
        make_embeddings=make_embeddings,
    )
    return register(entry)


def short_name(trainer: Any) -> str:
    """A name that fits a selectbox: "SimCLR on shapes, step 200" (the full description is the entry's source)."""
    from core.train import METHOD_NAMES

    method = METHOD_NAMES.get(trainer.cfg.method, trainer.cfg.method).split(" (")[0]
    return f"{method} on {trainer.dataset.name}, step {trainer.step_count}"


def register_embedding_file(data: bytes, filename: str) -> Entry:
    """Read an uploaded .npy/.npz/.csv/.parquet (no pickle) and register it."""
    from core.embed import EmbeddingSet

    emb = EmbeddingSet.from_file(data, filename)
    entry = Entry(name=filename, kind="embeddings", source=emb.source or f"uploaded file {filename}",
                  payload=emb, _embeddings=emb)
    return register(entry)


def register_text_model(model: Any, *, name: str, source: str, textset: Any = None,
                        vectors: Any = None) -> Entry:
    """Register a sentence model (read-only: a shared cached model, or a frozen fine-tuned copy).

    Its embeddings are ``textset`` (a core.text.TextSet; default the built-in corpus) embedded by this model,
    with each sentence kept as the caption, so the Explorer can map them. ``vectors`` (N, D) skips the work.
    An entry of the same name is replaced, so reloading one model does not pile up copies.
    """
    def make_embeddings():
        from core import text as T

        return T.embedding_set(model, textset if textset is not None else T.load_corpus(), vectors=vectors)

    reg: dict[str, Entry] = st.session_state.setdefault(_STATE_KEY, {})
    reg.pop(name, None)
    entry = Entry(name=name, kind="text", source=source, payload=model, make_embeddings=make_embeddings)
    return register(entry)


# ------------------------------------------------------------------------------------------ widgets
def pick(label: str, key: str, *, kinds: Sequence[str] | None = None,
         accept: Callable[[Entry], bool] | None = None, none_label: str = "None",
         help: str | None = None) -> Entry | None:
    """One selectbox over the registry ("which embeddings / which model"). Returns the entry or None."""
    names = [e.name for e in entries(kinds or EMBEDDING_KINDS) if accept is None or accept(e)]
    choice = st.selectbox(label, [none_label, *names], key=key, persist_state="session", help=help)
    return None if choice == none_label else get(choice)


def panel(key: str = "home.registry") -> None:
    """The registry as a list with remove buttons, plus an uploader that adds an embedding file."""
    listing = st.container()  # filled after the upload is handled, so a new file is listed at once
    from core.embed import MAX_EMBEDDING_FILE_BYTES

    up = st.file_uploader(f"Add an embedding file (.npy, .npz, .csv or .parquet), up to "
                          f"{MAX_EMBEDDING_FILE_BYTES // 2**20} MB", key=f"{key}.upload",
                          max_upload_size=MAX_EMBEDDING_FILE_BYTES // 2**20,
                          help="Vectors, one row per item; .npz and .csv may carry ids and labels too.")
    if up is not None and st.session_state.get(f"{key}._last_upload") != up.file_id:
        from ui.widgets import user_errors

        with user_errors("reading the embedding file"):
            st.session_state[f"{key}._last_upload"] = up.file_id
            entry = register_embedding_file(up.getvalue(), up.name)
            st.success(f"Added **{entry.name}** to your session.")
    with listing:
        items = entries()
        if not items:
            st.caption("Nothing yet. Models you train (and stop, or let finish) appear here, and so do "
                       "embedding files you add below.")
        for e in items:
            with st.container(border=True, horizontal=True, vertical_alignment="center"):
                st.markdown(f"**{e.name}**  \n:gray[{KINDS.get(e.kind, e.kind)} · {e.source}]", width="stretch")
                st.button("Remove", key=f"{key}.remove.{e.name}", on_click=remove, args=(e.name,),
                          type="tertiary", icon=":material/delete:")


def register_clip(bundle: Any, *, imageset: Any = None, label: str | None = None) -> Entry:
    """Register a loaded :class:`core.clip.ClipBundle` as a "clip" entry.

    ``embed_images`` maps a float (N, C, H, W) batch in [0, 1] to L2-normalised numpy (the image tower,
    resized to the model's side); ``make_embeddings`` embeds ``imageset`` (default: 1,000 built-in shapes)
    into an :class:`core.embed.EmbeddingSet` with the set's labels. The bundle is shared read-only.
    """
    from core.clip import embed_image_tensor, embed_images

    def embed(x: Any):
        return embed_image_tensor(bundle, x)

    def make_embeddings():
        from core.embed import EmbeddingSet

        ds = imageset
        if ds is None:
            from core.data import load_dataset

            ds = load_dataset("shapes", n=1000, size=32, seed=1)
        vectors = embed_images(bundle, ds)
        return EmbeddingSet(vectors, list(ds.ids) if ds.ids else None,
                            {k: v for k, v in ds.labels.items()}, {k: list(v) for k, v in ds.classes.items()},
                            f"{bundle.name} image tower on {ds.name}")

    entry = Entry(
        name=label or bundle.name,
        kind="clip",
        source=f"{bundle.name}, {bundle.embed_dim}-d image and text towers",
        payload=bundle,
        image_size=int(bundle.image_size),
        dataset_name=getattr(imageset, "name", None),
        embed_images=embed,
        make_embeddings=make_embeddings,
    )
    return register(entry)


def register_clip_trainer(trainer: Any, *, label: str | None = None) -> Entry:
    """Register a Train-page CLIP run (``clip_model`` set) as a "clip" entry the CLIP page and Explorer can
    use: a frozen copy of its open_clip model (core.clip.bundle_from_trainer), embedding its held-out images."""
    from core.clip import bundle_from_trainer

    return register_clip(bundle_from_trainer(trainer), imageset=trainer.heldout, label=label)
