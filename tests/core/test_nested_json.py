"""Brackets nested thousands deep make Python's JSON decoder raise RecursionError: every reader of a user's
JSON turns that into one sentence (it used to escape as a traceback, or as "Something went wrong")."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import PlaygroundError

DEEP = "[" * 200_000 + "]" * 200_000


def test_the_decoder_really_recurses():
    with pytest.raises(RecursionError):
        json.loads(DEEP)


def test_settings_file():
    from ui.settings import from_json

    with pytest.raises(ValueError, match="nests brackets too deeply"):
        from_json(DEEP.encode(), namespaces=["train"])


@pytest.mark.parametrize("reader", ["texts", "pairs"])
def test_text_and_pairs_uploads(reader):
    from core import text as T

    data = ('{"text": "fine"}\n' + DEEP + "\n").encode()
    fn = T.texts_from_upload if reader == "texts" else T.pairs_from_upload
    with pytest.raises(PlaygroundError, match="Line 2 .* nests brackets too deeply"):
        fn(data, "x.jsonl")


def test_npz_metadata():
    import io

    from core.embed import EmbeddingSet

    buf = io.BytesIO()
    np.savez(buf, vectors=np.eye(3, dtype=np.float32), meta=np.array(DEEP))
    with pytest.raises(PlaygroundError, match="not valid JSON"):
        EmbeddingSet.from_file(buf.getvalue(), "e.npz")


def test_image_caption_table(tmp_path):
    from core.data import DatasetError, read_table

    path = tmp_path / "captions.jsonl"
    path.write_text('{"image": "a.png", "caption": "x"}\n' + DEEP + "\n")
    with pytest.raises(DatasetError, match="Line 2 .* nests brackets too deeply"):
        read_table(path)
