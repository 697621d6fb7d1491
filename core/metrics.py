"""How good is an embedding? kNN and linear-probe accuracy, alignment/uniformity, effective rank, invariances.

Inputs are NumPy arrays or torch tensors shaped (N, D); every function returns plain Python floats or NumPy,
so results go straight into tables and charts.
"""
from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.neighbors import knn
from core.vectors import as_matrix, resolve_device, rows_per_chunk, unit_rows

if TYPE_CHECKING:
    from core.data import ImageSet
    from core.embed import EmbeddingSet

__all__ = [
    "knn_accuracy", "knn_accuracies", "linear_probe_accuracy", "alignment", "uniformity", "effective_rank",
    "singular_spectrum", "pair_similarities", "similarity_histograms", "invariance_report", "INVARIANCE_RULE",
]


def _labels_1d(labels, n: int, name: str) -> np.ndarray:
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if lab.shape != (n,):
        raise ValueError(f"{name} must be shaped ({n},) to match the vectors, got {lab.shape}.")
    return lab


def _numpy_matrix(x, name: str) -> np.ndarray:
    return as_matrix(x, name, torch.device("cpu")).numpy()


def knn_accuracy(train_vectors, train_labels, test_vectors, test_labels, *, k: int = 10,
                 exclude_self: bool = False, device: torch.device | str | None = None) -> float:
    """Accuracy of a k-nearest-neighbour classifier with cosine similarity (as in Wu et al. 2018, without
    the temperature weighting): each test vector takes the majority label of its k most similar training
    vectors; a tie between labels goes to the label of the most similar neighbour among the tied ones.

    ``k`` larger than the training set is reduced to its size. Test labels never seen in training count as
    errors. The search is exact and bounded in memory (core.neighbors), so 20,000 x 20,000 fits.

    A point must never vote for itself: with ``exclude_self=True`` the test set IS the training set (same rows,
    same order: leave-one-out) and row i never counts itself among its neighbours. Passing the same vectors as
    train and test without it is refused, because every point would find itself at similarity 1 and k=1
    accuracy would read 1.0 even on random labels.
    Shape: train (N, D), (N,); test (M, D), (M,) -> float in [0, 1].
    """
    return knn_accuracies(train_vectors, {"y": train_labels}, test_vectors, {"y": test_labels}, k=k,
                          exclude_self=exclude_self, device=device)["y"]


def knn_accuracies(train_vectors, train_labels: dict, test_vectors, test_labels: dict, *, k: int = 10,
                   exclude_self: bool = False, device: torch.device | str | None = None) -> dict[str, float]:
    """:func:`knn_accuracy` for several labelings of the same vectors (e.g. every factor of a dataset) at the
    cost of one: the k nearest neighbours are found once and vote once per labeling. ``train_labels`` and
    ``test_labels`` map a name to that labeling's (N,) and (M,) labels; the result maps the name to accuracy.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive whole number, got {k!r}.")
    if set(train_labels) != set(test_labels):
        raise ValueError("train_labels and test_labels must name the same labelings.")
    dev = resolve_device(device)
    train = unit_rows(train_vectors, "train_vectors", dev)  # (N, D)
    test = unit_rows(test_vectors, "test_vectors", dev)  # (M, D)
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"Train and test vectors differ in dimension ({train.shape[1]} vs {test.shape[1]}).")
    labels = {name: (_labels_1d(train_labels[name], train.shape[0], "train_labels"),
                     _labels_1d(test_labels[name], test.shape[0], "test_labels")) for name in train_labels}
    if test.shape[0] == 0:
        raise ValueError("There are no test vectors to classify.")
    if exclude_self:
        if test.shape[0] != train.shape[0]:
            raise ValueError(f"exclude_self=True scores a set against itself, so train and test need the same "
                             f"rows; got {train.shape[0]} and {test.shape[0]}.")
        if train.shape[0] < 2:
            raise ValueError("Leave-one-out kNN needs at least two vectors.")
    elif train.shape == test.shape and bool(torch.allclose(train, test, rtol=0.0, atol=1e-6)):
        raise ValueError("The test vectors are the training vectors, so every point would find itself as its "
                         "nearest neighbour; pass exclude_self=True (leave-one-out) or hold out a test split.")
    k_eff = min(int(k), train.shape[0] - (1 if exclude_self else 0))

    if exclude_self:  # leave-one-out: the test rows are the training rows
        nn_idx = knn(train, k_eff, exclude_self=True, device=dev)[0]  # (M, k), best first
    else:
        nn_idx = knn(train, k_eff, queries=test, device=dev)[0]
    nn_idx = torch.as_tensor(nn_idx, device=dev)
    return {name: _knn_vote(nn_idx, y_train, y_test, k_eff, dev) for name, (y_train, y_test) in labels.items()}


def _knn_vote(nn_idx: torch.Tensor, y_train: np.ndarray, y_test: np.ndarray, k_eff: int, dev) -> float:
    """Accuracy of the majority vote of each test row's neighbours ``nn_idx`` (M, k), best first."""
    classes, train_codes = np.unique(y_train, return_inverse=True)
    n_classes = len(classes)
    # test labels as codes into the training classes; unseen labels get -1 (always wrong)
    pos = np.searchsorted(classes, y_test).clip(0, n_classes - 1)
    test_codes = np.where(classes[pos] == y_test, pos, -1)
    codes_t = torch.as_tensor(train_codes.reshape(-1), device=dev)
    nn_codes = codes_t[nn_idx]  # (M, k)
    # votes per class, and the rank of each class's most similar member (k if absent)
    votes = torch.zeros(nn_idx.shape[0], n_classes, device=dev)
    votes.scatter_add_(1, nn_codes, torch.ones_like(nn_codes, dtype=votes.dtype))
    ranks = torch.arange(k_eff, device=dev, dtype=torch.float32).expand_as(nn_codes)
    first = torch.full((nn_idx.shape[0], n_classes), float(k_eff), device=dev)
    first.scatter_reduce_(1, nn_codes, ranks, reduce="amin")
    # more votes wins; among equal votes the smaller first rank wins (k + 1 > any rank difference)
    score = votes * (k_eff + 1) - first  # (M, C)
    pred = score.argmax(dim=1).cpu().numpy()
    return float(np.mean(pred == test_codes))


def linear_probe_accuracy(train_vectors, train_labels, test_vectors, test_labels, *, max_iter: int = 300,
                          C: float = 1.0) -> float:
    """Test accuracy of a logistic-regression probe (scikit-learn, L-BFGS, L2 strength ``1/C``) trained on
    standardised features (mean and scale from the training split only). The standard linear evaluation
    of self-supervised features (e.g. SimCLR, Chen et al. 2020), kept small so it runs in seconds.

    A training split with a single label predicts that label. Shape: (N, D), (N,), (M, D), (M,) -> float.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive whole number, got {max_iter!r}.")
    if not isinstance(C, (int, float)) or isinstance(C, bool) or not C > 0:
        raise ValueError(f"C (inverse regularisation strength) must be positive, got {C!r}.")
    x_train = _numpy_matrix(train_vectors, "train_vectors")
    x_test = _numpy_matrix(test_vectors, "test_vectors")
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"Train and test vectors differ in dimension ({x_train.shape[1]} vs {x_test.shape[1]}).")
    y_train = _labels_1d(train_labels, x_train.shape[0], "train_labels")
    y_test = _labels_1d(test_labels, x_test.shape[0], "test_labels")
    if x_train.shape[0] == 0 or x_test.shape[0] == 0:
        raise ValueError("The linear probe needs at least one training and one test vector.")
    if len(np.unique(y_train)) < 2:
        return float(np.mean(y_test == y_train[0]))
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(max_iter=max_iter, C=float(C))
    with warnings.catch_warnings():
        # a probe stopped at max_iter is still a fair probe; the warning would only alarm users
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*converge.*")
        clf.fit(scaler.transform(x_train), y_train)
    return float(np.mean(clf.predict(scaler.transform(x_test)) == y_test))


def alignment(z1, z2, alpha: float = 2) -> float:
    """Alignment of positive pairs (Wang & Isola 2020): ``E ||f(x) - f(y)||_2^alpha`` on L2-normalised
    vectors. 0 = each pair identical; 4 (alpha = 2) = each pair opposite. Lower is better.
    Shape: (N, D), (N, D) -> float.
    """
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha!r}.")
    dev = resolve_device(None)
    a, b = unit_rows(z1, "z1", dev), unit_rows(z2, "z2", dev)
    if a.shape != b.shape:
        raise ValueError(f"z1 and z2 must have the same shape (row i of each is a positive pair), "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}.")
    return float((a - b).norm(dim=1).pow(alpha).mean())


def uniformity(z, t: float = 2) -> float:
    """Uniformity (Wang & Isola 2020): ``log E_{i<j} exp(-t ||z_i - z_j||_2^2)`` over all distinct pairs of
    L2-normalised vectors. More negative = spread more evenly over the sphere; 0 = all vectors equal.

    Exact over all N(N-1)/2 pairs, in chunks, with a log-sum-exp so small values do not underflow.
    Shape: (N, D) with N >= 2 -> float.
    """
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not t > 0:
        raise ValueError(f"t must be positive, got {t!r}.")
    dev = resolve_device(None)
    u = unit_rows(z, "z", dev)
    n = u.shape[0]
    if n < 2:
        raise ValueError("Uniformity needs at least two vectors.")
    parts = []
    step = rows_per_chunk(n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        sq = (2.0 - 2.0 * (u[start:stop] @ u.T)).clamp_(min=0.0)  # (B, N) squared distances of unit vectors
        rows = torch.arange(start, stop, device=dev).unsqueeze(1)
        upper = torch.arange(n, device=dev).unsqueeze(0) > rows  # pairs i < j only
        parts.append(torch.logsumexp((-t * sq)[upper].double(), dim=0))
    n_pairs = n * (n - 1) / 2
    return float(torch.logsumexp(torch.stack(parts), dim=0)) - math.log(n_pairs)


def effective_rank(z) -> float:
    """Effective rank (Roy & Vetterli 2007): ``exp(H(p))`` with ``p_k = s_k / sum(s)`` the normalised singular
    values of z and H the Shannon entropy. Between 1 (one direction) and min(N, D) (all equal). The matrix is
    not centred, as in the paper (and RankMe, Garrido et al. 2023). Shape: (N, D) -> float.
    """
    x = _numpy_matrix(z, "z").astype(np.float64)
    s = np.linalg.svd(x, compute_uv=False)
    total = s.sum()
    if total <= 0:
        raise ValueError("The effective rank of an all-zero matrix is undefined.")
    p = s / total
    p = p[p > 0]  # 0 log 0 = 0
    return float(np.exp(-(p * np.log(p)).sum()))


def singular_spectrum(z) -> np.ndarray:
    """The singular values of z as shares of their sum (the ``p_k`` of :func:`effective_rank`), largest
    first. A collapsed embedding puts nearly everything in the first few. Shape: (N, D) -> (min(N, D),)."""
    s = np.linalg.svd(_numpy_matrix(z, "z").astype(np.float64), compute_uv=False)
    total = s.sum()
    return s / total if total > 0 else s


def pair_similarities(z1, z2, *, max_negatives: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of positive pairs (z1_i, z2_i) and of negative pairs (z1_i, z2_j), i != j.

    Negatives are all N(N-1) cross pairs, or ``max_negatives`` of them drawn at random (seeded).
    Shape: (N, D), (N, D) -> (N,), (min(N(N-1), max_negatives),).
    """
    if isinstance(max_negatives, bool) or not isinstance(max_negatives, int) or max_negatives < 1:
        raise ValueError(f"max_negatives must be a positive whole number, got {max_negatives!r}.")
    dev = resolve_device(None)
    a, b = unit_rows(z1, "z1", dev), unit_rows(z2, "z2", dev)
    if a.shape != b.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}.")
    n = a.shape[0]
    pos = (a * b).sum(dim=1)  # (N,)
    n_neg = n * (n - 1)
    rng = np.random.default_rng(seed)
    if n_neg <= max_negatives:
        i, j = np.nonzero(~np.eye(n, dtype=bool))
    else:
        i = rng.integers(0, n, size=max_negatives)
        j = (i + rng.integers(1, n, size=max_negatives)) % n  # uniform over j != i
    it, jt = torch.as_tensor(i, device=dev), torch.as_tensor(j, device=dev)
    neg = (a[it] * b[jt]).sum(dim=1)
    return pos.clamp(-1, 1).cpu().numpy(), neg.clamp(-1, 1).cpu().numpy()


def similarity_histograms(z1, z2, bins: int = 50, *, max_negatives: int = 20_000, seed: int = 0) -> dict[str, Any]:
    """Histograms of positive- and negative-pair cosine similarities over [-1, 1], as densities so the two
    overlay on one chart despite their different counts.

    Returns ``{"edges": (bins+1,), "pos_density": (bins,), "neg_density": (bins,), "pos": (N,), "neg": (M,),
    "pos_mean": float, "neg_mean": float}``.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive whole number, got {bins!r}.")
    pos, neg = pair_similarities(z1, z2, max_negatives=max_negatives, seed=seed)
    edges = np.linspace(-1.0, 1.0, bins + 1)
    pos_d = np.histogram(pos, bins=edges, density=True)[0] if pos.size else np.zeros(bins)
    neg_d = np.histogram(neg, bins=edges, density=True)[0] if neg.size else np.zeros(bins)
    return {"edges": edges, "pos_density": pos_d, "neg_density": neg_d, "pos": pos, "neg": neg,
            "pos_mean": float(pos.mean()) if pos.size else float("nan"),
            "neg_mean": float(neg.mean()) if neg.size else float("nan")}


# The verdict rule of invariance_report, also shown in the app.
INVARIANCE_RULE = (
    "A factor is 'kept' when a linear probe predicts it on held-out images clearly better than always "
    "guessing its most common value: the probe closes at least 25% of the gap between that chance level and "
    "perfect accuracy, and beats chance by more than three binomial standard errors of the test split. "
    "Otherwise it is 'ignored': the embedding is (close to) invariant to it."
)
_KEPT_GAIN = 0.25
_KEPT_SIGMAS = 3.0


def invariance_report(embeddings: EmbeddingSet | np.ndarray | torch.Tensor, imageset: ImageSet | None = None,
                      *, test_fraction: float = 0.3, seed: int = 0,
                      factors: list[str] | None = None) -> list[dict[str, Any]]:
    """Which factors of variation does an embedding keep, and which is it invariant to?

    For each label factor (shape, colour, size, ... of the ImageSet, in its order) a linear probe is trained
    on a stratified ``1 - test_fraction`` of the items and scored on the rest, next to the chance level (the
    accuracy of always predicting the training split's most common value). Verdict: see ``INVARIANCE_RULE``.
    ``embeddings`` is an EmbeddingSet or an (N, D) array aligned with ``imageset``; with an EmbeddingSet,
    ``imageset`` may be None and the set's own labels are used. Factors with a single value are skipped.

    Returns rows ``{"factor", "accuracy", "chance", "gain", "verdict", "n_test"}``, where gain =
    (accuracy - chance) / (1 - chance).
    """
    from sklearn.model_selection import train_test_split

    if not isinstance(test_fraction, (int, float)) or isinstance(test_fraction, bool) \
            or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction!r}.")
    vectors = getattr(embeddings, "vectors", embeddings)
    x = _numpy_matrix(vectors, "embeddings")
    if imageset is not None:
        labels, n_items = imageset.labels, len(imageset)
    elif hasattr(embeddings, "labels"):
        labels, n_items = embeddings.labels, x.shape[0]
    else:
        raise ValueError("invariance_report needs an ImageSet, or an EmbeddingSet that carries labels.")
    if n_items != x.shape[0]:
        raise ValueError(f"The embeddings have {x.shape[0]} rows but the image set has {n_items} images; "
                         f"they must be aligned one to one.")
    names = list(labels) if factors is None else list(factors)
    unknown = [f for f in names if f not in labels]
    if unknown:
        raise ValueError(f"Unknown factor(s) {unknown}; available: {list(labels)}.")
    rows = []
    for factor in names:
        y = _labels_1d(labels[factor], x.shape[0], f"labels[{factor!r}]")
        values, counts = np.unique(y, return_counts=True)
        if len(values) < 2:
            continue
        idx = np.arange(x.shape[0])
        # stratify when every value can appear on both sides
        stratify = y if counts.min() >= 2 and round(test_fraction * len(y)) >= len(values) else None
        try:
            tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=stratify)
        except ValueError as exc:
            raise ValueError(f"Too few items ({len(y)}) to hold out a test split for factor {factor!r}.") from exc
        acc = linear_probe_accuracy(x[tr], y[tr], x[te], y[te])
        train_vals, train_counts = np.unique(y[tr], return_counts=True)
        majority = train_vals[np.argmax(train_counts)]
        chance = float(np.mean(y[te] == majority))
        sigma = math.sqrt(max(chance * (1 - chance), 1e-12) / len(te))
        gain = (acc - chance) / (1 - chance) if chance < 1 else 0.0
        kept = gain >= _KEPT_GAIN and acc - chance > _KEPT_SIGMAS * sigma
        rows.append({"factor": factor, "accuracy": acc, "chance": chance, "gain": float(gain),
                     "verdict": "kept" if kept else "ignored", "n_test": int(len(te))})
    return rows
