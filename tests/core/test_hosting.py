"""A shared classroom server (CP_SHARED_SERVER=1) reads no typed path, and its answer never tells an existing
path from a missing one (issue 34: CLIP's local folder and Text's "another model" used to)."""
from __future__ import annotations

import pathlib

import pytest

from core.errors import PlaygroundError
from core.hosting import TYPED_PATHS_OFF, shared_server


@pytest.fixture
def shared(monkeypatch):
    monkeypatch.setenv("CP_SHARED_SERVER", "1")


def _message(fn, *args) -> str:
    """fn's refusal, raised while any look at the file system would fail the test (it must come first)."""
    def looked(*a, **k):
        raise AssertionError(f"the file system was consulted: {a}")

    with pytest.MonkeyPatch.context() as mp:
        for name in ("is_dir", "is_file", "exists", "stat"):
            mp.setattr(pathlib.Path, name, looked)
        with pytest.raises(PlaygroundError) as err:
            fn(*args)
    return str(err.value)


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("on", True), ("", False), ("0", False)])
def test_the_setting(monkeypatch, value, expected):
    monkeypatch.setenv("CP_SHARED_SERVER", value)
    assert shared_server() is expected


def test_text_model_paths_answer_alike(shared, tmp_path):
    from core.text import load_text_model

    existing, missing = str(tmp_path), str(tmp_path / "not-here")
    answers = {_message(load_text_model, p) for p in (existing, missing, "/etc", "~/models/x", "./assets")}
    assert len(answers) == 1 and TYPED_PATHS_OFF in answers.pop()


def test_clip_paths_answer_alike(shared, tmp_path):
    import open_clip  # noqa: F401 - imported first: its own import reads files

    from core.clip import load_clip

    specs = [f"local-dir:{tmp_path}", f"local-dir:{tmp_path / 'nope'}", "local-dir:assets/mini_clip",
             f"ViT-B-32:{tmp_path / 'w.safetensors'}", "ViT-B-32:/etc/passwd.safetensors"]
    answers = {_message(load_clip, s) for s in specs}
    assert answers == {TYPED_PATHS_OFF}


def test_on_a_laptop_paths_still_work(monkeypatch, tmp_path):
    monkeypatch.delenv("CP_SHARED_SERVER", raising=False)
    from core.clip import load_clip

    with pytest.raises(PlaygroundError, match="was not found"):
        load_clip(f"local-dir:{tmp_path / 'nope'}")
    assert load_clip("local-dir:assets/mini_clip", device="cpu").embed_dim > 0


def test_the_shipped_mini_clip_still_loads_on_a_shared_server(shared):
    from core.clip import load_clip

    assert load_clip("mini-clip", device="cpu").embed_dim > 0
