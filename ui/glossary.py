"""One-line explanations of the words the app uses, for ``help=`` tooltips on any page and the glossary on the
Loss & Temperature Lab. Plain strings (no Streamlit), so any page or chart caption can use them.

    st.slider("Temperature", ..., help=glossary.help("temperature"))
"""
from __future__ import annotations

TERMS: dict[str, str] = {
    "NT-Xent": "SimCLR's loss: for each embedding, a softmax over the batch must pick out the other view of the same "
               "image; every other image is a negative (normalised temperature-scaled cross-entropy).",
    "InfoNCE": "The same softmax-picks-the-positive loss, written for one query against its key and a set of "
               "negative keys (MoCo keeps them in a queue of earlier batches).",
    "triplet loss": "Pull an anchor towards a positive and push a negative away until the negative is a margin "
                    "farther than the positive; mining decides which triplets count.",
    "margin contrastive": "Pairs: same-class pairs are pulled together, different-class pairs pushed apart until "
                          "they are at least the margin apart; then they feel nothing.",
    "SupCon": "Supervised contrastive loss: like NT-Xent, but every image of the same class in the batch counts as "
              "a positive.",
    "temperature": "τ divides every similarity before the softmax. Small τ: the softmax is sharp and the hardest "
                   "negatives get almost all the push. Large τ: all negatives push about equally.",
    "logit scale": "CLIP's name for 1 / temperature, learned during training; a rising scale means a sharper, more "
                   "confident softmax (CLIP caps it at 100).",
    "alignment": "How close the two views of one image land: the mean squared distance between positive pairs on "
                 "the unit sphere (0 = identical, 4 = opposite). Lower is better (Wang & Isola 2020).",
    "uniformity": "How evenly all embeddings spread over the sphere: log of the mean of exp(-2·distance²) over "
                  "pairs. 0 = everything in one point; more negative = more spread (Wang & Isola 2020).",
    "projection head": "The small MLP between the encoder and the loss. The loss shapes its output z; the encoder "
                       "output h before it is usually the better feature, so SimCLR throws the head away.",
    "effective rank": "How many directions the embeddings really use: exp of the entropy of the normalised "
                      "singular values. 1 = a line or a point (collapse), D = all directions equally.",
    "hard negative": "A negative that is already similar to the anchor. The softmax gives it a large weight, so "
                     "it gets most of the gradient, more so at low temperature.",
    "false negative": "A 'negative' that is really the same kind of thing (same class): self-supervised losses "
                      "push it away anyway, because they cannot know.",
    "gradient share": "A negative's part of the anchor's push: its softmax weight divided by the weights of all "
                      "negatives. The shares add up to 1.",
    "softmax weight": "exp(s/τ) divided by the sum over all other embeddings: how much the loss cares about each "
                      "pair. The positive's weight is the probability of picking it out.",
    "modality gap": "In CLIP-style models, image and text embeddings sit in two separate cones of the sphere, so "
                    "even a matching pair has a similarity well below 1.",
    "PCA": "Principal component analysis: the flat view of the embeddings along the directions where they vary "
           "most. Distances in the picture are only approximate.",
    "PCA of encoder features": "The encoder's vectors (before the projection head) drawn along their two "
                               "directions of most variance; dots close here are close in the embedding.",
    "alignment / uniformity": "Wang & Isola's two goals of a contrastive loss: positives close together "
                              "(alignment) and everything spread over the sphere (uniformity); lower is better "
                              "for both.",
    "kNN accuracy": "For each held-out image, do its k most similar training images share its label? The "
                    "standard quick test of an embedding.",
    "linear probe": "A logistic regression trained on frozen embeddings: if a straight line separates the classes, "
                    "the embedding has kept that factor.",
    "mining": "Which triplets a triplet loss uses: all valid ones, only the hardest per anchor, or semi-hard ones "
              "(negatives just beyond the positive, FaceNet).",
    "queue": "MoCo's memory of keys from earlier batches: many negatives without a huge batch.",
    "collapse": "Every input mapped to (almost) the same point: the loss is happy, the embedding is useless. "
                "Negatives or other tricks prevent it.",
    "shortcut": "A cheap feature (here: colour) that solves the training task without learning what we care "
                "about (shape). Augmentations must hide it.",
}

_LOWER = {k.lower(): k for k in TERMS}


def help(term: str) -> str:  # noqa: A001 - reads as glossary.help("...") at call sites, like help=
    """The one-line explanation of ``term`` (case-insensitive). Unknown terms raise KeyError: a typo in a
    page must fail its test, not show an empty tooltip."""
    return TERMS[_LOWER[term.lower()]]
