"""Text page, a long paste (issue 30): the first PASTE_SYNC lines are embedded at once, the rest on request,
chunk by chunk under a progress bar without embedding the first ones again, and search then ranks every line as
a plain sentence-transformers ranking does. The limits are lowered so the test pastes 8 lines, not 20,000."""
from __future__ import annotations

import numpy as np
import pytest

from tests.app.conftest import assert_clean

TEXT = "pages/text.py"
LINES = ["The dog chased the ball.", "Interest rates went up again.", "It rained all afternoon.",
         "A puppy fetched a stick in the park.", "The central bank raised its rates.",
         "Kittens nap in the sun.", "Storm clouds gathered over the hills.", "My cat ignores the laser pointer."]


@pytest.fixture(scope="module")
def reference(minilm_reference):
    return minilm_reference  # tests/conftest.py: loaded once per session


def _ranked(at) -> list[str]:
    frame = next(d for d in at.dataframe if "rank" in d.value.columns).value
    return frame["text"].tolist()


def _texts(at) -> str:
    return " ".join([c.value for c in at.caption] + [i.value for i in at.info])


def test_a_long_paste_is_embedded_in_part_then_all_on_request(make_app, monkeypatch, reference):
    import ui.textembed as TE

    import core.text

    monkeypatch.setattr(TE, "PASTE_SYNC", 5)
    monkeypatch.setattr(TE, "CHUNK", 3)
    embedded: list[str] = []  # every text the model is asked for (loaders.text_vectors reads core.text's name)
    plain_embed = core.text.embed_texts

    def counting(model, texts, **kw):
        embedded.extend(texts)
        return plain_embed(model, texts, **kw)

    monkeypatch.setattr(core.text, "embed_texts", counting)
    at = make_app(page=TEXT)
    at.radio(key="text.source").set_value("Paste a list").run()
    at.text_area(key="text.paste").input("\n".join(LINES)).run()
    at.text_input(key="text.query").input("a young dog playing fetch").run()
    assert_clean(at)
    assert "8 lines pasted: the first 5 are embedded now" in _texts(at)
    assert "5 texts" in _texts(at)
    # only the first 5 are searched so far, ranked as a plain encode ranks those 5
    q = reference.encode(["a young dog playing fetch"], normalize_embeddings=True)
    v = reference.encode(LINES, normalize_embeddings=True)
    first = [LINES[i] for i in np.argsort(-(v[:5] @ q[0]), kind="stable")]
    shown = _ranked(at)
    assert len(shown) == 5 and shown == first
    at.button(key="text._paste_all.go").click().run()
    assert_clean(at)
    assert "8 texts" in _texts(at) and "lines pasted" not in _texts(at)
    # every line is searched now, ranked as a plain encode of all of them ranks them (the chunks changed nothing)
    expected = [LINES[i] for i in np.argsort(-(v @ q[0]), kind="stable")]
    shown = _ranked(at)
    assert shown == expected[:len(shown)]
    assert "A puppy fetched a stick in the park." in shown[:2]
    # "Embed all" reused the first 5 the page had embedded: no pasted line went through the model twice
    pasted = [t for t in embedded if t in LINES]
    assert sorted(pasted) == sorted(set(pasted)), [t for t in set(pasted) if pasted.count(t) > 1]
