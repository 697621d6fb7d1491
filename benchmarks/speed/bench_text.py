"""Text: embedding throughput of ``core.text.embed_texts`` vs a plain ``SentenceTransformer.encode``, exact faiss
search vs NumPy brute force, approximate (HNSW, IVF) recall against exact, all side by side in one run; and
the wall time of the Text page's default fine-tuning run with its held-out recall before and after.

    python benchmarks/speed/bench_text.py [--sentences 1000] [--n 100000] [--queries 1000] [--k 10] [--repeats 3]
                                    [--threads N] [--skip-embed] [--skip-search] [--finetune-steps 30]

Search uses clustered unit vectors (400 centres plus noise, like real sentence embeddings): on plain Gaussian
noise every point is about as far from every other and approximate indexes collapse (see FINDINGS.md).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import machine_info, report  # noqa: E402

QUESTION = "Text: MiniLM embedding throughput, exact and approximate search, the Text page's fine-tuning run"
FULL: list[str] = []
QUICK = ["--sentences", "100", "--n", "5000", "--queries", "100", "--repeats", "1", "--finetune-steps", "3"]
MINUTES = (1, 4)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_embed(n: int, repeats: int) -> None:
    from core import text as T

    model = T.load_text_model()
    corpus = T.load_corpus().texts
    queries = [p.query for p in T.load_pairs()]
    rng = np.random.default_rng(0)
    pool = corpus + queries
    texts = list(dict.fromkeys(pool))[:n]
    seen = set(texts)
    while len(texts) < n:  # unique sentences only: ours embeds a repeated string once, which would flatter it
        a, b = rng.integers(0, len(pool), 2)
        s = f"{pool[a]} {pool[b]}"
        if s not in seen:
            seen.add(s)
            texts.append(s)
    ours_fn = lambda: T.embed_texts(model, texts, batch_size=64)  # noqa: E731
    plain_fn = lambda: model.encode(texts, batch_size=64, normalize_embeddings=True,  # noqa: E731
                                    convert_to_numpy=True, show_progress_bar=False)
    ours_fn(), plain_fn()  # warm-up
    ours, plain = [], []
    for _ in range(repeats):  # alternate, so load changes hit both alike
        ours.append(_timed(ours_fn))
        plain.append(_timed(plain_fn))
    diff = float(np.abs(ours_fn() - plain_fn()).max())
    o, p = statistics.median(ours), statistics.median(plain)
    print(f"embed {n} unique sentences ({model.device}): core.text.embed_texts {n / o:,.0f} sentences/s "
          f"({o:.2f} s) | plain SentenceTransformer.encode {n / p:,.0f} sentences/s ({p:.2f} s) | "
          f"ours/plain speed {p / o:.2f}x | max |diff| {diff:.1e}")
    report(f"embed {n} unique sentences, core.text.embed_texts", f"{n / o:,.0f} sentences/s",
           beside=f"plain SentenceTransformer.encode {n / p:,.0f} sentences/s ({p / o:.2f}x); max diff {diff:.1e}")


def _clustered(n: int, d: int, centres: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + 0.6 * rng.normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _numpy_topk(x: np.ndarray, q: np.ndarray, k: int, chunk: int = 250) -> np.ndarray:
    out = np.empty((len(q), k), dtype=np.int64)
    for s in range(0, len(q), chunk):
        scores = q[s:s + chunk] @ x.T
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        out[s:s + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def _recall(truth: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(t, f)) / t.size for t, f in zip(truth, found)]))


def bench_search(n: int, nq: int, k: int) -> None:
    from core import text as T

    x = _clustered(n, 384, 400, seed=0)
    rng = np.random.default_rng(1)  # queries: near-copies of stored vectors, as a paraphrase would be
    q = x[rng.integers(0, n, nq)] + 0.05 * rng.normal(size=(nq, 384)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)

    t_np = _timed(lambda: _numpy_topk(x, q, k))
    truth = _numpy_topk(x, q, k)
    build_exact = _timed(lambda: T.build_index(x, "exact"))
    exact = T.build_index(x, "exact")
    T.search(exact, q[:10], k)  # warm-up (thread pool start)
    t_exact = _timed(lambda: T.search(exact, q, k))
    _, ids = T.search(exact, q, k)
    print(f"search {n:,} x 384, {nq:,} queries, top-{k}: NumPy brute force {t_np:.2f} s | faiss IndexFlatIP "
          f"{t_exact:.2f} s (+{build_exact:.2f} s build) | speed-up {t_np / t_exact:.1f}x | recall vs NumPy "
          f"{_recall(truth, ids):.3f}")
    report(f"search {n:,} x 384, {nq:,} queries, top-{k}: faiss exact", f"{t_exact:.2f} s",
           beside=f"NumPy brute force {t_np:.2f} s ({t_np / t_exact:.1f}x); recall {_recall(truth, ids):.3f}")
    for kind in ("hnsw", "ivf"):
        t_build = time.perf_counter()
        index = T.build_index(x, kind)
        t_build = time.perf_counter() - t_build
        t = _timed(lambda: T.search(index, q, k))
        _, found = T.search(index, q, k)
        print(f"  {index.describe()}: search {t:.2f} s ({t_exact / t:.1f}x exact), build {t_build:.1f} s, "
              f"recall@{k} vs exact {_recall(ids, found):.3f} (core.text.approximate_recall on 200 queries: "
              f"{T.approximate_recall(index, x, q[:200], k):.3f})")
        report(f"search {n:,} x 384, {nq:,} queries, top-{k}: {kind}", f"{t:.2f} s",
               beside=f"recall@{k} vs exact {_recall(ids, found):.3f}; build {t_build:.1f} s")


def bench_finetune(steps: int) -> None:
    """The Text page's default run: topic pairs from the built-in corpus, batch 16, temperature 0.05."""
    from core import text as T

    model = T.load_text_model()
    corpus = T.load_corpus()
    topics = [corpus.classes["topic"][c] for c in corpus.labels["topic"]]
    cfg = T.FineTuneConfig(steps=steps, match="topic")
    t0 = time.perf_counter()
    train, held = T.topic_pairs(corpus, seed=cfg.seed)
    tuner = T.TextFineTuner(cfg, train, model, passages=corpus.texts, passage_topics=topics, heldout=held)
    tuner.run()
    wall = time.perf_counter() - t0
    before, after = tuner.evals[0], tuner.evals[-1]
    print(f"fine-tune {steps} steps on {len(train)} topic pairs ({len(held)} held out): {wall:.1f} s wall with "
          f"{len(tuner.evals)} evaluations ({tuner.history[-1].seconds:.1f} s in steps) | held-out recall@1 "
          f"{before.recall[1]:.3f} -> {after.recall[1]:.3f}, MRR {before.mrr:.3f} -> {after.mrr:.3f}")
    report(f"the Text page's fine-tuning, {steps} steps", f"{wall:.1f} s",
           beside=f"held-out recall@1 {before.recall[1]:.3f} -> {after.recall[1]:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--skip-embed", action="store_true")
    ap.add_argument("--skip-search", action="store_true")
    ap.add_argument("--finetune-steps", type=int, default=30, help="0 skips the fine-tuning run")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_info())
    if not args.skip_embed:
        bench_embed(args.sentences, args.repeats)
    if not args.skip_search:
        bench_search(args.n, args.queries, args.k)
    if args.finetune_steps:
        bench_finetune(args.finetune_steps)


if __name__ == "__main__":
    main()
