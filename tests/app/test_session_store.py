"""ui.cache: the per-session store evicts by entries and by bytes (counted by hand here), and the Explorer keeps
its store under the budget while opening many spaces, with the same results after an eviction."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.app.conftest import assert_clean
from ui.cache import RecentSet, SessionStore, nbytes

MB = 2**20


def test_nbytes_counts_arrays_tensors_and_contents_once():
    a = np.zeros((100, 10), np.float32)  # 4,000 bytes
    t = torch.zeros(50, 4, dtype=torch.float64)  # 1,600 bytes
    assert nbytes(a) == 4000 and nbytes(t) == 1600
    assert nbytes([a, a]) == 2 * 8 + 4000  # one array held twice is counted once
    assert nbytes({"ab": a, "t": t}) == 2 + 4000 + 1 + 1600
    assert nbytes(a[:10]) == 400  # a view counts what it shows

    @dataclasses.dataclass
    class Holder:
        vectors: np.ndarray
        model: torch.nn.Module
        name: str

    held = Holder(np.ones(25, np.float64), torch.nn.Linear(1000, 1000), "abc")
    assert nbytes(held) == 200 + 0 + 3  # a model belongs to the registry or a shared cache, not the store


def test_evicts_the_least_recently_used_by_entries():
    s = SessionStore(max_entries=3, max_bytes=10**9)
    for k in "abc":
        s.put(k, np.zeros(10, np.uint8))
    assert s.get("a") is not None  # a is now the newest
    s.put("d", np.zeros(10, np.uint8))
    assert s.keys() == ["c", "a", "d"] and "b" not in s
    assert len(s) == 3 and s.bytes == 30 and s.evictions == 1


def test_evicts_by_bytes_against_a_hand_count():
    s = SessionStore(max_entries=100, max_bytes=10 * MB)
    sizes = {"a": 4 * MB, "b": 3 * MB, "c": 2 * MB}  # 9 MB: all fit
    for k, n in sizes.items():
        s.put(k, np.zeros(n, np.uint8))
    assert s.bytes == 9 * MB and s.keys() == ["a", "b", "c"]
    s.put("d", np.zeros(2 * MB, np.uint8))  # 11 MB: the oldest (a, 4 MB) goes -> 7 MB
    assert s.keys() == ["b", "c", "d"] and s.bytes == 7 * MB
    s.put("e", np.zeros(6 * MB, np.uint8))  # 13 MB: b (3) goes -> 10 MB, exactly the budget
    assert s.keys() == ["c", "d", "e"] and s.bytes == 10 * MB
    s.put("f", np.zeros(5 * MB, np.uint8))  # 15 MB: c (2) and d (2) go -> 11 MB is still over, e (6) too -> 5 MB
    assert s.keys() == ["f"] and s.bytes == 5 * MB
    s.put("g", np.zeros(1 * MB, np.uint8))
    s.put("f", np.zeros(1 * MB, np.uint8))  # replacing an entry counts only the new value
    assert s.keys() == ["g", "f"] and s.bytes == 2 * MB
    assert s.evictions == 5


def test_one_entry_bigger_than_the_budget_is_kept_alone():
    s = SessionStore(max_entries=10, max_bytes=1 * MB)
    s.put("small", np.zeros(100, np.uint8))
    big = s.put("big", np.zeros(3 * MB, np.uint8))
    assert s.keys() == ["big"] and s.bytes == 3 * MB and s.get("big") is big
    s.put("next", np.zeros(10, np.uint8))
    assert s.keys() == ["next"] and s.bytes == 10


def test_get_or_make_makes_again_after_an_eviction():
    s = SessionStore(max_entries=1, max_bytes=MB)
    calls = []

    def make(k):
        calls.append(k)
        return np.full(4, k)

    assert s.get_or_make("x", lambda: make(1))[0] == 1
    assert s.get_or_make("x", lambda: make(2))[0] == 1  # a hit: not made again
    s.get_or_make("y", lambda: make(3))  # evicts x
    assert s.get_or_make("x", lambda: make(4))[0] == 4
    assert calls == [1, 3, 4]


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        SessionStore(max_entries=0)


def test_recent_set_forgets_the_oldest():
    r = RecentSet(3)
    for k in range(5):
        r.add(k)
    assert 0 not in r and 1 not in r and all(k in r for k in (2, 3, 4)) and len(r) == 3
    r.add(2)  # seen again: now the newest
    r.add(5)
    assert 2 in r and 3 not in r


# ------------------------------------------------------------------------------------------ the Explorer
def _entry(name: str, seed: int, n: int = 60):
    """A registry entry of an (untrained, seeded) encoder with ``n`` held-out shapes: enough for a map."""
    from core.data import load_dataset
    from core.models import EncoderConfig, build_model
    from ui.registry import Entry, TrainedModel

    torch.manual_seed(seed)
    model = build_model(EncoderConfig(arch="small_cnn"), device="cpu").eval()
    held = load_dataset("shapes", n=n, size=32, seed=seed)
    tm = TrainedModel(model=model, cfg=None, dataset=held, heldout=held, step=0, history=[], evals=[])
    return Entry(name=name, kind="trained", source=f"untrained small_cnn seed {seed}", payload=tm, image_size=32,
                 dataset_name="shapes", created=float(seed))


def _shown(at) -> tuple:
    metrics = {m.label: m.value for m in at.metric}
    captions = [c.value for c in at.caption if "items ×" in c.value]
    return metrics["Neighbour preservation"], metrics["Trustworthiness"], metrics["Map"], captions[0]


def test_explorer_keeps_its_store_under_the_budget_and_remakes_what_it_evicted(make_app):
    from core.embed import embed_imageset
    from ui.cache import STATE_KEY

    entries = {f"model {i}": _entry(f"model {i}", i) for i in range(5)}
    at = make_app()
    at.session_state["registry"] = entries
    at.session_state["explorer.applied"] = {"method": "pca", "dim": 2, "n_neighbors": 15, "min_dist": 0.1,
                                            "metric": "cosine", "perplexity": 30, "k": 10}
    at.session_state["explorer.source"] = "Your models"
    at.session_state["explorer.entry"] = "model 0"
    at.switch_page("pages/explorer.py").run()
    assert_clean(at)
    first = _shown(at)
    store = at.session_state[STATE_KEY]
    assert len(store) == 1
    one = store.bytes  # one space: its vectors, pixels and image set (every model's set is the same size)
    assert one > 60 * 32 * 32 * 3 * 2  # at least the page's pixels and the image set's
    budget = int(2.5 * one)  # room for two spaces, never three
    at.session_state[STATE_KEY] = SessionStore(max_entries=8, max_bytes=budget)
    for name in list(entries)[1:] + ["model 0"]:
        at.selectbox(key="explorer.entry").set_value(name).run()
        assert_clean(at)
        store = at.session_state[STATE_KEY]
        assert store.bytes <= budget and len(store) <= 2, (name, store.bytes, store.keys())
    assert store.evictions >= 3
    assert _shown(at) == first  # model 0 was evicted and made again: the same map, scores and caption
    held = [k for k in store.keys() if k[0] == "explorer.trained" and k[1] == "model 0"]
    assert held
    space = store.get(held[0])
    tm = entries["model 0"].payload
    np.testing.assert_allclose(space.es.vectors, embed_imageset(tm.model, tm.heldout, space="encoder").vectors,
                               atol=1e-6)
