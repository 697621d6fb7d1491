"""Embedding Explorer: maps (PCA / UMAP / t-SNE) you can trust or see through, neighbours, similarity,
health, a comparison of two spaces, and export. Thin: ui.explorer caches and draws, core computes."""
from __future__ import annotations

from ui.router import require as _routed

_routed()  # a page opened before app.py ever ran: route it through app.py (ui/router.py)

import io

import numpy as np
import pandas as pd
import streamlit as st

from ui import explorer as X
from ui import mapselect as SEL
from ui import registry, yourimages
from ui.loaders import upscale
from ui.widgets import user_errors
from ui import settings as S
from ui.cache import recent
from ui.urlstate import bind

P = "explorer"
METHOD_LABELS = X.METHOD_LABELS
HELP = {
    "umap": "UMAP (McInnes et al. 2018) keeps each point's nearest neighbours together; distances between "
            "far-apart clusters mean little. PCA is the linear, exact view: it keeps global distances but "
            "may overlap clusters. t-SNE keeps local neighbourhoods only.",
    "n_neighbors": "How many neighbours UMAP looks at per point: small values show fine local structure, "
                   "large values more of the global layout.",
    "min_dist": "How tightly UMAP may pack points: 0 gives dense clumps, 0.5+ an even spread.",
    "metric": "How closeness is measured in the original space. Contrastive models are trained with cosine "
              "similarity, so cosine is the natural choice.",
    "perplexity": "t-SNE's effective number of neighbours per point (5–50 is usual).",
    "k": "Neighbourhood size for the honesty scores and the neighbour list.",
    "preservation": "Neighbour preservation: for each point, the share of its k nearest neighbours in the "
                    "original space (measured with the map's own metric) that are also its k nearest on the map. "
                    "Green = the map is honest here, red = points that look close here are not.",
    "trust": "Trustworthiness (Venna & Kaski 2001, as in scikit-learn): 1 when no point on the map has "
             "neighbours that are not near it in the original space; a random layout scores about 0.5.",
    "erank": "Effective rank (Roy & Vetterli 2007): how many directions the embedding really uses. A collapsed "
             "space has an effective rank near 1.",
    "uniformity": "Uniformity (Wang & Isola 2020): log of the mean Gaussian potential between points on the "
                  "sphere. Lower = spread more evenly; 0 = every vector the same.",
    "alignment": "Alignment (Wang & Isola 2020): mean squared distance between the two views of an image. "
                 "Lower = views land closer together.",
}

st.title("Embedding Explorer")
st.caption("Look inside an embedding space: a 2-D or 3-D map, how far to trust it, each item's nearest "
           "neighbours, similarity matrices, health checks, and how two spaces differ.")


# ------------------------------------------------------------------------------------------ which space
def _demo() -> dict[str, X.Space]:
    return X.demo_spaces()


source = st.segmented_control("Look at", S.options(f"{P}.source"), **bind(f"{P}.source", "default"),
                              help="The demo needs nothing: an untrained and a trained encoder "
                                                   "on the built-in shapes. Models you train appear under "
                                                   "'Your models'.") or "Demo"
space: X.Space | None = None
with user_errors("loading the embeddings"):
    if source == "Demo":
        demos = _demo()
        names = list(demos)
        pick = st.radio("Which model", names, index=len(names) - 1, key=f"{P}.demo_pick", horizontal=True,
                        help="Compare them in the Compare view: one click.")
        space = demos[pick]
    elif source == "Your models":
        entry = registry.pick("Which embeddings", f"{P}.entry",
                              help="Trained models (and stopped runs), CLIP models and embedding files of this "
                                   "session. Train one on the Train page, or add a file on the Home page.")
        if entry is None:
            st.info("Nothing picked. Train a model on the Train page (it is saved here when it stops), or use "
                    "the demo.", icon=":material/info:")
        elif entry.kind == "trained":
            which = st.radio("Space", ["encoder", "projection"], key=f"{P}.space", horizontal=True,
                             help="Encoder: the features used downstream. Projection: the head's output, "
                                  "where the contrastive loss acts.")
            with st.spinner("Embedding the held-out images…"):
                space = X.trained_space(entry, which)
        else:
            space = X.entry_space(entry)
    elif source == "Your images":  # a .zip of the user's, embedded by a model of theirs (ui.yourimages)
        space = yourimages.explorer_source(P)
    else:
        c1, c2 = st.columns(2)
        up = c1.file_uploader("Vectors (.npy, .npz, .csv, .parquet; up to 300 MB)", key=f"{P}.upload",
                              type=["npy", "npz", "csv", "parquet"],
                              help="One row per item. .csv/.parquet: columns d0, d1, … (or any numeric "
                                   "columns), plus optional id and label columns. Never unpickled.")
        meta = c2.file_uploader("Optional metadata (.csv)", key=f"{P}.meta", type=["csv"],
                                help="Labels, captions or ids for each row: matched by an 'id' column, else "
                                     "row by row.")
        if up is not None:
            space = X.upload_space(up.getvalue(), up.name, meta.getvalue() if meta else None,
                                   meta.name if meta else None)

if space is None:
    st.stop()

es = space.es
n_all = len(es)
rows_drawn = X.sample_rows(n_all, X.MAX_POINTS)
st.caption(f"**{space.name}** · {n_all:,} items × {es.dim} dimensions · {es.source or 'no source given'}")
if len(rows_drawn) < n_all:
    st.warning(f"{n_all:,} points are more than a browser draws smoothly: the interactive map shows a seeded "
               f"random sample of {len(rows_drawn):,}, and a datashader image below it shows every point "
               "(every computation that fits uses all of them).", icon=":material/scatter_plot:")

# ------------------------------------------------------------------------------------------ settings
DEFAULTS = {n: st.session_state.get(f"{P}.{n}", S.default(f"{P}.{n}"))  # the table's defaults, or a link's
            for n in ("method", "dim", "n_neighbors", "min_dist", "metric", "perplexity", "k")}
# Above the plotly limit big sets open on PCA, which is instant; UMAP stays one click away in the settings (fitted
# on a sample, the rest placed by their nearest sampled neighbours: core.bigmap.sampled_umap).
applied = st.session_state.setdefault(f"{P}.applied", dict(DEFAULTS, method="pca") if len(rows_drawn) < n_all
                                      else dict(DEFAULTS))
with st.expander("Map settings", icon=":material/tune:", expanded=False):
    with st.form(f"{P}.form", border=False):
        c1, c2, c3 = st.columns(3)
        method = c1.selectbox("Method", list(METHOD_LABELS), format_func=METHOD_LABELS.get,
                              **bind(f"{P}.method", "index", list(METHOD_LABELS).index(applied["method"])),
                              help=HELP["umap"])
        dim = c1.radio("Dimensions", [2, 3], **bind(f"{P}.dim", "index", [2, 3].index(applied["dim"])), horizontal=True)
        n_neighbors = c2.slider("UMAP neighbours", 2, 100, **bind(f"{P}.n_neighbors", initial=applied["n_neighbors"]),
                                help=HELP["n_neighbors"])
        min_dist = c2.slider("UMAP min distance", 0.0, 0.99, step=0.01, **bind(f"{P}.min_dist", initial=applied["min_dist"]),
                             help=HELP["min_dist"])
        metric = c3.selectbox("Metric (UMAP, t-SNE)", ["cosine", "euclidean"],
                              **bind(f"{P}.metric", "index", ["cosine", "euclidean"].index(applied["metric"])),
                              help=HELP["metric"])
        perplexity = c3.slider("t-SNE perplexity", 5, 50, **bind(f"{P}.perplexity", initial=applied["perplexity"]),
                               help=HELP["perplexity"])
        k = c3.slider("Neighbours k (scores, lists)", 5, 50, **bind(f"{P}.k", initial=applied["k"]), help=HELP["k"])
        if st.form_submit_button("Apply", type="primary", icon=":material/play_arrow:", key=f"{P}.apply"):
            applied = {"method": method, "dim": dim, "n_neighbors": n_neighbors, "min_dist": min_dist,
                       "metric": metric, "perplexity": perplexity, "k": k}
            st.session_state[f"{P}.applied"] = applied


# A UMAP or t-SNE of every point of a big set takes minutes on a CPU (200,000 x 64: minutes of the 517 s an
# upload once took here, because the demo's UMAP setting carried over): such a set's first picture is PCA, and
# the slow map is computed only when asked for, for this set.
drawn_settings = applied
if applied["method"] != "pca" and n_all > X.SLOW_MAP_POINTS and es.dim > 3 \
        and space.key not in recent(f"{P}._slow_ok"):
    drawn_settings = dict(applied, method="pca")
    if (st.session_state.get(f"{P}.view") or "Map") in ("Map", "Export"):
        c1, c2 = st.columns([3, 1])
        c1.info(f"A {METHOD_LABELS[applied['method']]} map of {n_all:,} points takes minutes here, so this first "
                "picture is PCA (seconds).", icon=":material/speed:")
        if c2.button(f"Compute the {METHOD_LABELS[applied['method']]} map", key=f"{P}.slow_go",
                     icon=":material/hourglass_top:"):
            recent(f"{P}._slow_ok").add(space.key)
            st.rerun()


view = st.segmented_control("View", S.options(f"{P}.view"), **bind(f"{P}.view", "default"),
                            ) or "Map"


GALLERY = 24  # images of a selection shown beside its table, each with a button that lights it on the map


def show_images(rows, captions, width=72):
    if space.images is None:
        return False
    st.image([upscale(space.images[i], 96) for i in rows], caption=captions, width=width)
    return True


# ------------------------------------------------------------------------------------------ Map
if view in ("Map", "Export"):
    problem = X.unmappable(es)
    if problem:
        st.error(problem, icon=":material/error:")
        st.stop()
    preview = st.empty()
    fig = coords = None
    with user_errors("computing the map"):
        coords, used, kept_metric = X.compute_map(space, drawn_settings, rows_drawn, preview)
        preview.empty()
        k = int(applied["k"])
        scores = X.map_scores(space, drawn_settings, used, kept_metric, coords, k)
        colour_opts = [*es.factors, "k-means clusters", "HDBSCAN clusters", "neighbour preservation", "nothing"]
        c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
        colour = c1.selectbox("Colour by", colour_opts, key=f"{P}.colour",
                              help="A label, a clustering of the original vectors (scikit-learn), or how well "
                                   "each point's neighbourhood survived the projection.")
        c2.metric("Neighbour preservation", f"{scores['mean']:.2f}", help=HELP["preservation"],
                  delta=f"{scores['mean'] - scores['chance']:+.2f} vs random", delta_color="normal")
        c3.metric("Trustworthiness", f"{scores['trust']:.3f}", help=HELP["trust"])
        c4.metric("Map", f"{used} {coords.shape[1]}-D", help=f"Original-space metric the scores use: "
                                                            f"{kept_metric}; k = {k}.")
        if scores["n_scored"] < n_all:
            st.caption(f"Scores measured on a seeded sample of {scores['n_scored']:,} points.")
        categories = values = None
        if colour in es.factors:
            categories = es.label_names(colour)
        elif colour in ("k-means clusters", "HDBSCAN clusters"):
            n_cl = max(2, len(es.classes[es.factors[0]])) if es.factors else 8
            ids = X.clusters(space.key, "kmeans" if colour.startswith("k") else "hdbscan", n_cl, es.vectors)
            categories = [f"cluster {c}" if c >= 0 else "noise" for c in ids]
        elif colour == "neighbour preservation":
            values = scores["per_point"]
        # what the maps reported since the last run, before anything is drawn (so the figure drawn below
        # already shows it): a box / lasso makes the group, a click the focus
        SEL.take_map_selection(P, space.key, X.selected_rows(st.session_state.get(f"{P}.map")))
        if st.session_state.get(f"{P}.thumbs"):
            from ui.thumbmap import clicked_row

            SEL.take_pick(P, space.key, "thumbs", clicked_row(st.session_state.get(f"{P}.thumbmap")))
        lit = SEL.highlight(P, space.key)  # table ticks, else the box / lasso group: the rest is greyed
        hover = X.hover_text(space, rows_drawn, {"kept neighbours": scores["per_point"]})
        fig = X.scatter(coords, rows_drawn, hover, categories=categories, values=values,
                        value_name="kept", title=f"{used} map of {space.name}", selected=lit)
        st.session_state[f"{P}._fig"] = fig
    if fig is None:  # the map could not be made: the sentence above says why, and nothing below can run
        st.stop()
    if view == "Map":
        thumbs = False
        if space.images is not None and coords.shape[1] == 2:
            thumbs = st.toggle("Show the images on the map", key=f"{P}.thumbs",
                               help="Each item drawn as its thumbnail (deck.gl, one sprite atlas). Zoom in to read "
                                    "them; hover for a bigger one; click one for its neighbours. Box and lasso "
                                    "selections need the dot map.")
        if thumbs:
            from ui.thumbmap import thumbnail_map

            hit = thumbnail_map(coords, space.images, lambda rows: X.hover_text(space, rows), cache_key=space.key,
                                key=f"{P}.thumbmap", highlight=lit)
            SEL.take_pick(P, space.key, "thumbs", hit)
        else:
            event = st.plotly_chart(fig, key=f"{P}.map", on_select="rerun",
                                    selection_mode=("points", "box", "lasso"), width="stretch",
                                    config={"displaylogo": False,
                                            "toImageButtonOptions": {"filename": "embedding-map"}})
            if SEL.take_map_selection(P, space.key, X.selected_rows(event, fig)):
                st.rerun()  # a selection the state did not hold yet (a callback-less first report): redraw
        if len(rows_drawn) < n_all and coords.shape[1] == 2:
            # Every point, rasterised server-side by datashader (ui.bigmap): zoom re-draws at full detail, a
            # click anywhere picks the nearest point, which opens the same neighbours panel as a click above.
            from ui.bigmap import big_map

            st.subheader(f"All {n_all:,} points")
            factor = colour if colour in es.factors else (es.factors[0] if es.factors else None)
            big_pick = big_map(coords, None if factor is None else es.labels[factor],
                               classes=None if factor is None else es.classes[factor], ids=es.ids,
                               key=f"{P}.bigmap",
                               note=f"{used} coordinates of all {n_all:,} points; the map above draws a "
                                    f"seeded sample of {len(rows_drawn):,}.")
            SEL.take_pick(P, space.key, "bigmap", big_pick)
        st.number_input("…or show the neighbours of item number", min_value=0, max_value=n_all - 1,
                        value=None, step=1, key=f"{P}.point", placeholder="row 0 to " f"{n_all - 1}",
                        help="For 3-D maps (which cannot be clicked) or to find an item by its row.",
                        on_change=lambda: SEL.set_focus(P, space.key, st.session_state.get(f"{P}.point")))
        focused = SEL.focus(P, space.key)
        picked = [focused] if focused is not None and focused < n_all else []
        if not thumbs:
            st.caption("Click a point for its nearest neighbours; pick the box or lasso tool above the map and drag "
                       "for a table and a gallery of a group: tick rows in the table to light them up on the map.")
        if len(picked) == 1:
            from core.similarity import nearest

            i = picked[0]
            st.subheader(f"Item {es.ids[i]}")
            left, right = st.columns([1, 4])
            with left:
                show_images([i], [es.ids[i]], width=120)
                for f in es.factors[:5]:
                    st.caption(f"{f}: **{es.label_names(f)[i]}**")
                if space.texts is not None:
                    st.caption(space.texts[i])
            with right:
                idx, sims = nearest(es.vectors, i, k=min(k, n_all - 1))
                st.markdown(f"**{len(idx)} nearest neighbours in the original {es.dim}-D space** (cosine similarity)")
                main = es.factors[0] if es.factors else None
                caps = [f"{s:.3f}" + (f" · {es.label_names(main)[j]}" if main else "") for j, s in zip(idx, sims)]
                if not show_images(idx, caps):
                    st.dataframe(pd.DataFrame({"id": [es.ids[j] for j in idx], "cosine": sims,
                                               **{f: [es.label_names(f)[j] for j in idx] for f in es.factors[:3]}}),
                                 hide_index=True)
                st.caption(f"{scores['per_point'][i]:.0%} of these are also its nearest on the map."
                           if np.isfinite(scores["per_point"][i]) else "")
        group = SEL.group(P, space.key)
        if group:
            head, clear = st.columns([4, 1])
            head.subheader(f"{len(group):,} selected items")
            clear.button("Clear the selection", key=f"{P}.clear_sel", on_click=SEL.clear, args=(P,),
                         icon=":material/deselect:")
            left, right = st.columns([3, 2])
            with left:
                ticked = SEL.group_table(P, space.key, es, images=space.images, texts=space.texts)
                st.caption(f"{len(ticked):,} ticked: lit on the map, the rest greyed." if ticked else
                           "Tick rows (click their left edge) to light those items up on the map.")
            with right:
                if es.factors:
                    f = es.factors[0]
                    names = np.asarray(es.label_names(f))[group]
                    counts = pd.Series(names).value_counts()
                    st.bar_chart(counts, horizontal=True, x_label="items", y_label=f, height=200)
                buf = io.StringIO()
                pd.DataFrame({"id": [es.ids[i] for i in group]}).to_csv(buf, index=False)
                st.download_button("Download the selected ids (.csv)", buf.getvalue(), "selected-ids.csv",
                                   "text/csv", key=f"{P}.sel_download", icon=":material/download:",
                                   on_click="ignore")
                shown = (ticked or group)[:GALLERY]
                if space.images is not None:
                    SEL.gallery(P, space.key, space.images, shown, [str(es.ids[i]) for i in shown])
                    if len(ticked or group) > GALLERY:
                        st.caption(f"The first {GALLERY} of {len(ticked or group):,} (the table lists them all).")

# ------------------------------------------------------------------------------------------ Similarity
if view == "Similarity":
    from core.similarity import cosine_matrix, likely_false_negatives, near_duplicates, nearest

    with user_errors("computing similarities"):
        c1, c2 = st.columns(2)
        n_sub = c1.select_slider("Items in the matrix", S.options(f"{P}.sim_n"), **bind(f"{P}.sim_n"),
                                 help="A seeded random subset of the set.")
        order_by = c2.selectbox("Sort by", [*es.factors, "k-means clusters"], key=f"{P}.sim_sort")
        sub = X.sample_rows(n_all, int(n_sub), seed=1)
        if order_by in es.factors:
            keys = es.labels[order_by][sub]
        else:
            keys = X.clusters(space.key, "kmeans", 8, es.vectors)[sub]
        sub = sub[np.argsort(keys, kind="stable")]
        lab = es.label_names(order_by)[:] if order_by in es.factors else None
        names = [f"{es.ids[i]}" + (f" ({lab[i]})" if lab else "") for i in sub]
        st.plotly_chart(X.heatmap(cosine_matrix(es.vectors[sub]), names,
                                  f"Cosine similarity of {len(sub)} items, sorted by {order_by}"),
                        width="stretch", key=f"{P}.sim_heatmap")
        c1, c2 = st.columns(2)
        a = c1.number_input("Row", 0, len(sub) - 1, 0, key=f"{P}.sim_row")
        b = c2.number_input("Column", 0, len(sub) - 1, min(1, len(sub) - 1), key=f"{P}.sim_col")
        sim_ab = float(cosine_matrix(es.vectors[[sub[a]]], es.vectors[[sub[b]]])[0, 0])
        st.markdown(f"Cell ({a}, {b}): **{names[a]}** vs **{names[b]}**, cosine **{sim_ab:.3f}**")
        show_images([sub[a], sub[b]], [names[a], names[b]], width=96)

        if space.model is not None and space.imageset is not None and space.augment is not None:
            st.subheader("NT-Xent softmax of one training batch")
            tau = st.select_slider("Temperature", S.options(f"{P}.tau"), **bind(f"{P}.tau"),
                                   help="Each row is a softmax over the other 2N-1 views; the loss is the mean "
                                        "-log of the outlined positive. Low temperature sharpens every row.")
            from core.batchview import ntxent_matrix

            m = ntxent_matrix(*X.views(space, 16), float(tau))
            st.plotly_chart(X.ntxent_heatmap(m), width="stretch", key=f"{P}.ntxent")

        st.subheader("Near-duplicates")
        thr = st.slider("Similarity threshold", 0.80, 1.0, step=0.005, **bind(f"{P}.dup_thr"),
                        help="Pairs of different items at least this cosine-similar.")
        pool = X.sample_rows(n_all, 20000, seed=2)
        pairs = near_duplicates(es.vectors[pool], threshold=float(thr), max_pairs=200)
        st.caption(f"{len(pairs)} pair(s){' (the 200 most similar)' if len(pairs) == 200 else ''}"
                   f"{f' among a sample of {len(pool):,}' if len(pool) < n_all else ''}.")
        for i, j, s in pairs[:8]:
            gi, gj = pool[i], pool[j]
            if not show_images([gi, gj], [f"{es.ids[gi]}", f"{es.ids[gj]} · {s:.3f}"], width=72):
                st.caption(f"{es.ids[gi]} ↔ {es.ids[gj]}: {s:.3f}")

        if es.factors:
            f = es.factors[0]
            st.subheader(f"Hardest negatives and likely false negatives ({f})")
            focused = SEL.focus(P, space.key)
            anchor = st.number_input("Anchor item (row)", 0, n_all - 1, focused if focused is not None else 0,
                                     key=f"{P}.anchor", help="Or click a point on the map first.")
            idx, sims = nearest(es.vectors, int(anchor), k=min(200, n_all - 1))
            y = es.labels[f]
            other = [(j, s) for j, s in zip(idx, sims) if y[j] != y[anchor]][:8]
            st.markdown(f"Most similar items **with another {f}** than {es.ids[anchor]} "
                        f"({es.label_names(f)[anchor]}): what a supervised loss would push hardest.")
            # an `if`, not `show_images(...) or st.dataframe(...)`: Streamlit's "magic" writes the value of a bare
            # expression, and st.write of that DeltaGenerator crashed parsing this multi-line statement
            if not show_images([int(anchor)] + [j for j, _ in other],
                               ["anchor"] + [f"{s:.3f} · {es.label_names(f)[j]}" for j, s in other], width=64):
                st.dataframe(pd.DataFrame({"id": [es.ids[j] for j, _ in other], "cosine": [s for _, s in other]}))
            fn = likely_false_negatives(es.vectors[pool], y[pool], k=8)
            st.markdown(f"Most similar pairs of **different items with the same {f}**: SimCLR and MoCo treat each "
                        f"as a negative and push them apart (false negatives).")
            for i, j, s in fn:
                gi, gj = pool[i], pool[j]
                if not show_images([gi, gj], [es.label_names(f)[gi], f"{s:.3f}"], width=64):
                    st.caption(f"{es.ids[gi]} ↔ {es.ids[gj]}: {s:.3f}")

# ------------------------------------------------------------------------------------------ Health
if view == "Health":
    from core.metrics import INVARIANCE_RULE

    with user_errors("computing the health checks"), st.spinner("Measuring the space…"):
        h = X.health(space.labels_key, es)
        c = st.columns(4)
        c[0].metric("Effective rank", f"{h['erank']:.1f} of {min(h['n'], h['dim'])}", help=HELP["erank"])
        c[1].metric("Uniformity (t = 2)", f"{h['uniformity']:.2f}", help=HELP["uniformity"])
        pairs = X.pair_histograms(space)
        if pairs["alignment"] is not None:
            c[2].metric("Alignment", f"{pairs['alignment']:.3f}", help=HELP["alignment"])
        top = h["spectrum"][:1]
        c[3].metric("Largest direction", f"{float(top[0]) if len(top) else 0:.0%} of the spectrum",
                    help="Share of the singular-value sum in the first direction.")
        st.plotly_chart(X.spectrum(h["spectrum"][:64]), width="stretch", key=f"{P}.spectrum")
        if pairs["pos"] is not None:
            st.plotly_chart(X.histograms(pairs["pos"], pairs["neg"], pairs["pos_name"], pairs["neg_name"],
                                         pairs["title"]), width="stretch", key=f"{P}.hist")
        if h["factors"]:
            st.subheader("What the space knows")
            rows = [{"factor": f, "kNN (leave-one-out, k = 10)": r["knn"], "linear probe (held-out 30%)": r["probe"],
                     "chance": r["chance"], "verdict": r["verdict"]} for f, r in h["factors"].items()]
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                         column_config={c: st.column_config.ProgressColumn(c, min_value=0.0, max_value=1.0,
                                                                           format="percent")
                                        for c in ("kNN (leave-one-out, k = 10)", "linear probe (held-out 30%)",
                                                  "chance")})
            st.caption("kNN never lets a point vote for itself. " + INVARIANCE_RULE)
        else:
            st.caption("This set has no labels, so there is no accuracy to measure.")

# ------------------------------------------------------------------------------------------ Compare
if view == "Compare":
    with user_errors("comparing the spaces"):
        others = X.comparable_spaces(space)
        if not others:
            st.info("There is no second space to compare with. Open the demo for 'untrained vs trained'.")
        else:
            other_name = st.selectbox("Compare with", list(others), key=f"{P}.other",
                                      help="Items are matched by id; only shared ids are compared.")
            other = others[other_name]()
            kk = int(applied["k"])
            cmp = X.compare(space, other, kk)
            if cmp["n"] < 3:
                st.warning("The two sets share fewer than three ids, so there is nothing to compare.")
            else:
                st.caption(f"{cmp['n']:,} items are in both spaces (matched by id).")
                st.metric(f"Mean neighbour overlap (Jaccard@{kk})", f"{cmp['jaccard'].mean():.2f}",
                          help="Per item: shared neighbours / all neighbours, in the two original spaces. "
                               "1 = identical neighbourhoods, 0 = nothing in common.")
                # Linked selection: each map highlights what was picked on the OTHER one (a chart whose figure
                # follows its own selection is redrawn as a new chart, which drops that selection).
                picks = {key: X.selected_rows(st.session_state.get(f"{P}.{key}")) for key in ("cmp_a", "cmp_b")}
                # A box / lasso on either map makes the pair's group (ui.mapselect), listed in a table below;
                # rows ticked there light up on both maps.
                pair = f"cmp:{space.key}:{other.key}"
                for key in ("cmp_a", "cmp_b"):
                    SEL.take_map_selection(f"{P}.cmp", pair, picks[key])
                cmp_ticked = SEL.highlight(f"{P}.cmp", pair)
                cols = st.columns(2)
                for col, sp, rows_, key in ((cols[0], space, cmp["rows_a"], "cmp_a"),
                                            (cols[1], other, cmp["rows_b"], "cmp_b")):
                    link = cmp_ticked if cmp_ticked else picks["cmp_b" if key == "cmp_a" else "cmp_a"]
                    sub = X.Space(sp.name, sp.es.subset(rows_), images=None if sp.images is None else sp.images[rows_],
                                  texts=None if sp.texts is None else [sp.texts[i] for i in rows_])
                    cc, _, _ = X.compute_map(sub, applied)
                    r = np.arange(len(rows_))
                    hv = X.hover_text(sub, r, {"Jaccard": cmp["jaccard"]})
                    with col:
                        st.plotly_chart(X.scatter(cc, r, hv, values=cmp["jaccard"], value_name="Jaccard",
                                                  title=sp.name[:60], selected=set(link) or None, height=460),
                                        key=f"{P}.{key}", on_select="rerun", selection_mode=("points", "box", "lasso"),
                                        width="stretch")
                cmp_group = SEL.group(f"{P}.cmp", pair)
                if cmp_group:
                    head, clear = st.columns([4, 1])
                    head.subheader(f"{len(cmp_group):,} selected items, in both spaces")
                    clear.button("Clear the selection", key=f"{P}.cmp_clear", on_click=SEL.clear, args=(f"{P}.cmp",),
                                 icon=":material/deselect:")
                    ra = cmp["rows_a"]
                    shared = X.Space(space.name, space.es.subset(ra),
                                     images=None if space.images is None else space.images[ra],
                                     texts=None if space.texts is None else [space.texts[i] for i in ra])
                    SEL.group_table(f"{P}.cmp", pair, shared.es, images=shared.images, texts=shared.texts,
                                    extra={f"Jaccard@{kk}": cmp["jaccard"]})
                    st.caption("Tick rows to light those items up on both maps.")
                st.subheader("Items whose neighbourhoods changed most")
                worst = np.argsort(cmp["jaccard"], kind="stable")[:10]
                ra = cmp["rows_a"]
                caps = [f"{space.es.ids[ra[w]]} · {cmp['jaccard'][w]:.2f}" for w in worst]
                if not show_images([ra[w] for w in worst], caps, width=72):
                    st.dataframe(pd.DataFrame({"id": [space.es.ids[ra[w]] for w in worst],
                                               "Jaccard": cmp["jaccard"][worst]}), hide_index=True)

# ------------------------------------------------------------------------------------------ Export
if view == "Export":
    with user_errors("preparing the export"):
        table = X.export_table(space, coords)
        c1, c2, c3 = st.columns(3)
        c1.download_button("Vectors, map and labels (.csv)", table.to_csv(index=False).encode(),
                           "embedding-map.csv", "text/csv", key=f"{P}.csv", icon=":material/download:",
                           on_click="ignore")
        pq = io.BytesIO()
        table.to_parquet(pq, index=False)
        c2.download_button("Same as .parquet", pq.getvalue(), "embedding-map.parquet",
                           "application/octet-stream", key=f"{P}.parquet", icon=":material/download:",
                           on_click="ignore")
        c3.download_button("The map as a standalone HTML page", X.figure_html(st.session_state[f"{P}._fig"]),
                           "embedding-map.html", "text/html", key=f"{P}.html", icon=":material/download:",
                           on_click="ignore")
        st.caption("PNG: use the camera button in the map's toolbar (plotly's own client-side export; the "
                   "kaleido package for server-side PNGs is not installed). The HTML file works offline: "
                   "plotly.js is inside it.")
        st.dataframe(table.head(20), hide_index=True)
