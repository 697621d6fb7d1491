"""Cosine-similarity search over embedding sets: exact, chunked, on the compute device.

All functions take NumPy arrays or torch tensors shaped (N, D), L2-normalise rows inside (cosine similarity is
the dot product of unit vectors) and return NumPy. Work is split into row chunks so an (N, N) similarity
matrix is never held in memory: 20,000 x 20,000 runs in pieces of at most ``core.vectors.CHUNK_ELEMENTS``
floats; the k-nearest searches run in :func:`core.neighbors.knn` (faiss on the CPU, torch on a GPU).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from core.neighbors import knn
from core.vectors import resolve_device, rows_per_chunk, unit_array, unit_rows

# cosine_matrix refuses to build dense matrices larger than this (256 MiB of float32).
MAX_MATRIX_ELEMENTS = 1 << 26


def cosine_matrix(a, b=None, *, device: torch.device | str | None = None) -> np.ndarray:
    """Dense cosine-similarity matrix. Shape: (N, D), (M, D) -> (N, M); ``b=None`` means ``b = a``.

    For large sets use :func:`nearest`; matrices over ``MAX_MATRIX_ELEMENTS`` entries are refused.

    >>> cosine_matrix(np.eye(2)).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    dev = resolve_device(device)
    ua = unit_rows(a, "a", dev)
    ub = ua if b is None else unit_rows(b, "b", dev)
    if ua.shape[1] != ub.shape[1]:
        raise ValueError(f"a and b need the same dimension, got {ua.shape[1]} and {ub.shape[1]}.")
    if ua.shape[0] * ub.shape[0] > MAX_MATRIX_ELEMENTS:
        raise ValueError(f"A {ua.shape[0]} x {ub.shape[0]} similarity matrix is too large to hold; "
                         f"use nearest() or near_duplicates(), which work in chunks.")
    return (ua @ ub.T).clamp_(-1.0, 1.0).cpu().numpy()


def nearest(vectors, query, k: int = 10, *, exclude_self: bool = True,
            device: torch.device | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k most cosine-similar rows of ``vectors`` for each query, best first.

    ``query`` is either row indices into ``vectors`` (an int, or a 1-D integer array; with ``exclude_self``
    each row's own index is skipped) or query vectors shaped (D,) or (Q, D) (nothing is excluded).
    Returns ``(indices, sims)``: shape (k,) each for a single query (an int or a (D,) vector), else (Q, k).
    ``k`` larger than the candidates available is reduced to fit.

    >>> idx, sims = nearest(np.array([[1.0, 0], [0.9, 0.1], [0, 1]]), 0, k=1)
    >>> idx.tolist()
    [1]
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive whole number, got {k!r}.")
    dev = resolve_device(device)
    # on the CPU in NumPy, which is what knn hands to faiss: no torch pass over the whole set per click
    unit = unit_array if dev.type == "cpu" else functools.partial(unit_rows, device=dev)
    base = unit(vectors, "vectors")  # (M, D)
    n = base.shape[0]
    q_arr = query.detach().cpu().numpy() if isinstance(query, torch.Tensor) else np.asarray(query)
    single = q_arr.ndim == 0 or (q_arr.ndim == 1 and not np.issubdtype(q_arr.dtype, np.integer))
    if np.issubdtype(q_arr.dtype, np.integer) and q_arr.ndim <= 1:
        rows = q_arr.reshape(-1).astype(np.int64)
        if rows.size and (rows.min() < -n or rows.max() >= n):
            raise ValueError(f"Query index out of range for {n} vectors.")
        rows = np.where(rows < 0, rows + n, rows)
        queries = None  # rows of the set itself
        skip_self = exclude_self
    else:
        queries = unit(q_arr, "query")
        if queries.shape[1] != base.shape[1]:
            raise ValueError(f"Query vectors have dimension {queries.shape[1]}, the set has {base.shape[1]}.")
        skip_self = False
    k_eff = min(int(k), n - 1 if skip_self else n)
    if k_eff < 1:
        raise ValueError("There are no other vectors to compare with.")
    if queries is None:
        idx_np, sims_np = knn(base, k_eff, rows=rows, exclude_self=skip_self, device=dev)
    else:
        idx_np, sims_np = knn(base, k_eff, queries=queries, device=dev)
    if single:
        return idx_np[0], sims_np[0]
    return idx_np, sims_np


def near_duplicates(vectors, threshold: float = 0.98, *, max_pairs: int = 10_000,
                    device: torch.device | str | None = None) -> list[tuple[int, int, float]]:
    """Pairs (i, j, sim) with i < j and cosine similarity >= ``threshold``, most similar first.

    At most ``max_pairs`` pairs are returned (the most similar ones), so a set of identical vectors
    cannot produce N^2/2 results. Shape: vectors (N, D).
    """
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a cosine similarity between -1 and 1, got {threshold!r}.")
    if isinstance(max_pairs, bool) or not isinstance(max_pairs, int) or max_pairs < 1:
        raise ValueError(f"max_pairs must be a positive whole number, got {max_pairs!r}.")
    dev = resolve_device(device)
    u = unit_rows(vectors, "vectors", dev)
    n = u.shape[0]
    found_i, found_j, found_s = [], [], []
    kept = 0
    step = rows_per_chunk(n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        sims = u[start:stop] @ u.T  # (B, N)
        rows = torch.arange(start, stop, device=dev).unsqueeze(1)  # (B, 1) global row index
        cols = torch.arange(n, device=dev).unsqueeze(0)  # (1, N)
        hit = (sims >= threshold) & (cols > rows)  # upper triangle only: each pair once
        ii, jj = hit.nonzero(as_tuple=True)
        if ii.numel():
            s = sims[ii, jj]
            found_i.append(ii + start)
            found_j.append(jj)
            found_s.append(s)
            kept += s.numel()
            if kept > 4 * max_pairs:  # prune as we go so memory stays bounded
                s_all, i_all, j_all = torch.cat(found_s), torch.cat(found_i), torch.cat(found_j)
                top = torch.topk(s_all, max_pairs).indices
                found_s, found_i, found_j = [s_all[top]], [i_all[top]], [j_all[top]]
                kept = max_pairs
    if not found_s:
        return []
    s_all, i_all, j_all = torch.cat(found_s), torch.cat(found_i), torch.cat(found_j)
    # most similar first; ties in (i, j) order so the result is deterministic
    order = np.lexsort((j_all.cpu().numpy(), i_all.cpu().numpy(), -s_all.cpu().numpy()))[:max_pairs]
    i_np, j_np, s_np = i_all.cpu().numpy()[order], j_all.cpu().numpy()[order], s_all.cpu().numpy()[order]
    return [(int(i), int(j), float(min(s, 1.0))) for i, j, s in zip(i_np, j_np, s_np)]


def _rows_and_label_codes(vectors, labels, k, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked unit rows (N, D) and labels as int codes (N,) on ``dev``, for the label-aware searches."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive whole number, got {k!r}.")
    u = unit_rows(vectors, "vectors", dev)
    n = u.shape[0]
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if lab.shape != (n,):
        raise ValueError(f"labels must be shaped ({n},) to match the vectors, got {lab.shape}.")
    return u, torch.as_tensor(np.unique(lab, return_inverse=True)[1].reshape(-1), device=dev)


def hardest_negatives(vectors, labels, k: int = 5, *,
                      device: torch.device | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the k most cosine-similar rows with a *different* label (the hard negatives).

    Returns ``(indices, sims)``, each shaped (N, k), best first. Where fewer than k items carry another
    label, the missing places hold index -1 and similarity NaN. Shape: vectors (N, D), labels (N,).
    """
    dev = resolve_device(device)
    u, codes = _rows_and_label_codes(vectors, labels, k, dev)
    # the labels' codes leave out every same-label row, self included; short rows come back as -1 / NaN
    idx_np, sims_np = knn(u, int(k), labels=codes.cpu().numpy(), device=dev)
    return idx_np, np.clip(sims_np, -1.0, 1.0)


def neighbour_overlap(a, b, k: int = 10, *, device: torch.device | str | None = None) -> np.ndarray:
    """Per item, the Jaccard index |A_i ∩ B_i| / |A_i ∪ B_i| of its k cosine-nearest neighbours in two
    embedding spaces over the same items (row i of ``a`` and of ``b`` are the same item). 1 = the same
    neighbourhood in both spaces, 0 = nothing shared. Shape: (N, D1), (N, D2) -> float64 (N,).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive whole number, got {k!r}.")
    dev = resolve_device(device)
    ua, ub = unit_rows(a, "a", dev), unit_rows(b, "b", dev)
    n = ua.shape[0]
    if ub.shape[0] != n:
        raise ValueError(f"The two spaces must hold the same items: {n} rows vs {ub.shape[0]}.")
    if n < 2:
        raise ValueError("Neighbour overlap needs at least two items.")
    k = min(int(k), n - 1)
    na = torch.as_tensor(knn(ua, k, exclude_self=True, device=dev)[0], device=dev)  # (N, k)
    nb = torch.as_tensor(knn(ub, k, exclude_self=True, device=dev)[0], device=dev)
    out = np.empty(n, dtype=np.float64)
    step = rows_per_chunk(2 * k)
    for start in range(0, n, step):
        inter = (na[start:start + step].unsqueeze(2) == nb[start:start + step].unsqueeze(1)).any(dim=2).sum(dim=1)
        out[start:start + step] = (inter / (2 * k - inter)).cpu().numpy()
    return out


def likely_false_negatives(vectors, labels, k: int = 50, *,
                           device: torch.device | str | None = None) -> list[tuple[int, int, float]]:
    """The ``k`` most cosine-similar pairs (i, j, sim), i < j, of *different* items that share a label.

    An instance-discrimination batch (SimCLR, MoCo) treats every other image as a negative, so these pairs are
    pushed apart even though they are the same class: the "false negatives" of Chen et al. 2021 / Huynh et al.
    2022. Shape: vectors (N, D), labels (N,).
    """
    dev = resolve_device(device)
    u, codes = _rows_and_label_codes(vectors, labels, k, dev)
    n = u.shape[0]
    best_s, best_i, best_j = [], [], []
    step = rows_per_chunk(n)
    cols = torch.arange(n, device=dev).unsqueeze(0)
    for start in range(0, n, step):
        stop = min(start + step, n)
        sims = u[start:stop] @ u.T  # (B, N)
        rows = torch.arange(start, stop, device=dev).unsqueeze(1)
        keep = (codes[start:stop].unsqueeze(1) == codes.unsqueeze(0)) & (cols > rows)  # same label, i < j
        sims = sims.masked_fill(~keep, float("-inf")).reshape(-1)
        top = torch.topk(sims, min(int(k), sims.numel()))
        ok = torch.isfinite(top.values)
        flat = top.indices[ok]
        best_s.append(top.values[ok])
        best_i.append(flat // n + start)
        best_j.append(flat % n)
    if not best_s:
        return []
    s_all, i_all, j_all = (torch.cat(t).cpu().numpy() for t in (best_s, best_i, best_j))
    order = np.lexsort((j_all, i_all, -s_all))[: int(k)]
    return [(int(i_all[o]), int(j_all[o]), float(min(s_all[o], 1.0))) for o in order]


def contrastive_softmax(z1, z2, temperature: float = 0.2, *,
                        device: torch.device | str | None = None) -> np.ndarray:
    """The NT-Xent (SimCLR, Chen et al. 2020) probability matrix of one batch of view pairs.

    Rows and columns are the 2N views [z1; z2]. Row a holds softmax_b(sim(a, b) / temperature) over every
    b != a (the diagonal is 0); the positive of row i is column i + N (and of row i + N, column i). The loss is
    the mean over rows of -log(probability of the positive). Shape: (N, D), (N, D) -> (2N, 2N).
    """
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}.")
    dev = resolve_device(device)
    a, b = unit_rows(z1, "z1", dev), unit_rows(z2, "z2", dev)
    if a.shape != b.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}.")
    z = torch.cat([a, b])  # (2N, D)
    if z.shape[0] ** 2 > MAX_MATRIX_ELEMENTS:
        raise ValueError(f"A batch of {a.shape[0]} pairs is too large to show as one matrix.")
    logits = (z @ z.T) / float(temperature)
    logits.fill_diagonal_(float("-inf"))
    return torch.softmax(logits, dim=1).cpu().numpy()


CLUSTER_METHODS = ("kmeans", "hdbscan")


def cluster(vectors, method: str = "kmeans", *, n_clusters: int = 8, seed: int = 0) -> np.ndarray:
    """Cluster ids of L2-normalised vectors (cosine geometry) with scikit-learn: ``KMeans`` (Lloyd, k-means++
    start, seeded) or ``HDBSCAN`` (Campello et al. 2013; -1 marks noise). Shape: (N, D) -> int64 (N,).
    """
    if method not in CLUSTER_METHODS:
        raise ValueError(f"Unknown clustering {method!r}; use one of {', '.join(CLUSTER_METHODS)}.")
    u = unit_rows(vectors, "vectors", torch.device("cpu")).numpy()
    n = u.shape[0]
    if method == "kmeans":
        from sklearn.cluster import KMeans

        if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or n_clusters < 2:
            raise ValueError(f"n_clusters must be a whole number of at least 2, got {n_clusters!r}.")
        k = min(int(n_clusters), n)
        return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(u).astype(np.int64)
    from sklearn.cluster import HDBSCAN

    if n < 5:
        raise ValueError("HDBSCAN needs at least 5 items.")
    return HDBSCAN(min_cluster_size=max(5, n // 100)).fit_predict(u).astype(np.int64)
