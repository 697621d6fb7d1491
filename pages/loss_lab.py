"""Loss & Temperature Lab: watch a loss train a toy, take one batch apart, reproduce classic results.

All maths lives in :mod:`core.lab` (on top of :mod:`core.losses`); this page reads widgets, calls it and draws.
The toy trains in a job in its own worker process (``core.runner`` via ``ui.jobs``), polled by a fragment, like the
Train page; the page's toy is the job's mirror, whose weights come back from the worker several times a second.
"""
from __future__ import annotations

from ui.router import require as _routed

_routed()  # a page opened before app.py ever ran: route it through app.py (ui/router.py)

import hashlib
import json
from dataclasses import asdict

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from ui import charts, jobs, session
from ui.glossary import TERMS
from ui.glossary import help as gloss
from ui.widgets import user_errors
from ui import settings as S
from ui.urlstate import bind

st.title("Loss & Temperature Lab")
st.caption(
    "What does a contrastive loss actually do? Train a toy and watch it, take one batch apart anchor by anchor, "
    "and rerun the classic experiments. Every claim here is a number or a plot computed on this page."
)

with st.spinner("Loading the maths…"):
    from core import lab

JOB_KEY = "loss_lab._job"
SIG_KEY = "loss_lab._sig"
PAUSE_SETTLE_S = 1.0  # how long Pause waits for the toy's worker to finish its step (a step takes milliseconds)
COLOURS = charts.PALETTE
POS, NEG, FALSE_NEG = "rgba(0,150,110,0.9)", "rgba(239,85,59,0.75)", "rgba(255,161,90,0.95)"
MINING_NAMES = {"all": "all valid triplets", "hard": "hardest only", "semihard": "semi-hard (FaceNet)"}


def _ask(action: str) -> None:
    st.session_state["loss_lab._action"] = action


def _toy_config() -> lab.ToyConfig:
    # the widgets' values, or the settings table's defaults while a widget is not drawn
    return S.toy_config({k: st.session_state[k] for k in S.keys(["loss_lab"]) if k in st.session_state}, pace=0.04)


def _signature(cfg: lab.ToyConfig) -> str:
    return json.dumps(asdict(cfg), sort_keys=True)


def _new_job(cfg: lab.ToyConfig) -> jobs.TrainingJob:
    old = st.session_state.get(JOB_KEY)
    if old is not None:
        old.pause()
        old.wait(5.0)
        old.close()  # its worker process ends
    job = session.own(jobs.TrainingJob(lab.ToyTrainer(cfg), target_steps=cfg.steps))
    st.session_state[JOB_KEY] = job
    st.session_state[SIG_KEY] = _signature(cfg)
    return job


# ------------------------------------------------------------------------------------------ 1. the toy
st.header("A toy you can watch", help="256 points in four classes, mapped by a small network onto the circle or "
          "the sphere. Each step shows it two noisy views of a batch and moves it along the loss's gradient.")
settings_col, toy_col = st.columns([1, 2.2], gap="large")
with settings_col, st.container(border=True):
    loss_key = st.selectbox("Loss", lab.TOY_LOSSES, format_func=lab.TOY_LOSS_NAMES.get, key="loss_lab.loss",
                            help=gloss("NT-Xent") + " Triplet, margin and SupCon use the class labels; "
                                 "'alignment only' has no negatives at all.")
    st.radio("Where the points live", S.options("loss_lab.dim"), key="loss_lab.dim", horizontal=True,
             format_func=lambda d: "circle (2-D)" if d == 2 else "sphere (3-D)",
             help=S.SETTINGS["loss_lab.dim"].help)
    if loss_key in lab.TOY_USES_TEMPERATURE:
        st.select_slider("Temperature τ", S.options("loss_lab.temperature"), **bind("loss_lab.temperature"),
                         format_func=lambda t: f"{t:g}", help=gloss("temperature"))
    st.select_slider("Batch size", S.options("loss_lab.batch"), **bind("loss_lab.batch"),
                     help=S.SETTINGS["loss_lab.batch"].help)
    if loss_key == "info_nce":
        st.select_slider("Negatives in the queue", S.options("loss_lab.queue"), **bind("loss_lab.queue"),
                         help=gloss("queue"))
    if loss_key == "triplet":
        st.selectbox("Mining", S.options("loss_lab.mining"), format_func=MINING_NAMES.get, **bind("loss_lab.mining", "index"),
                     help=gloss("mining"))
    if loss_key in lab.TOY_USES_MARGIN:
        st.slider("Margin", *S.bounds("loss_lab.margin"), step=0.1, **bind("loss_lab.margin"),
                  help=S.SETTINGS["loss_lab.margin"].help)
    st.slider("Augmentation noise", *S.bounds("loss_lab.noise"), step=0.1, **bind("loss_lab.noise"),
              help=S.SETTINGS["loss_lab.noise"].help)
    st.select_slider("Steps", S.options("loss_lab.steps"), **bind("loss_lab.steps"))
    st.number_input("Seed", *S.bounds("loss_lab.seed"), **bind("loss_lab.seed"),
                    help=S.SETTINGS["loss_lab.seed"].help)

with settings_col, user_errors("checking the toy's settings"):
    cfg = _toy_config()

action = st.session_state.pop("loss_lab._action", None)
job: jobs.TrainingJob | None = st.session_state.get(JOB_KEY)
sig = _signature(cfg)
with toy_col, user_errors("controlling the toy"):
    if action == "reset" or (job is not None and job.steps_done == 0 and st.session_state.get(SIG_KEY) != sig):
        job = _new_job(cfg)
    if job is None:
        job = _new_job(cfg)
    if job is not None:
        job.touch()
    if action == "play":
        if job.state == jobs.FAILED and not job.crashed:  # a crashed worker: play goes on from its last weights
            job = _new_job(cfg)
        elif job.state == jobs.FINISHED:
            job.extend(cfg.steps)
        job.play()
    elif action == "pause":
        job.pause()
        # Wait for the worker to end its step, so this rerun draws Play. Without the wait the rerun still saw the
        # job running and drew Pause again, and the live panel's rerun replaced it a moment later: a click on it
        # in that moment hit a button that was being taken away (a browser test failed that way on CI).
        job.wait(PAUSE_SETTLE_S)
    elif action == "step":
        if not job.step_now():
            st.toast("Every training slot on this server is busy; press Play to queue.",
                     icon=":material/hourglass_top:")

with toy_col:
    active = job.active
    with st.container(horizontal=True, gap="small", vertical_alignment="center"):
        if active:
            st.button("Pause", key="loss_lab.pause", on_click=_ask, args=("pause",), icon=":material/pause:",
                      type="primary")
        else:
            st.button("Play", key="loss_lab.play", on_click=_ask, args=("play",), icon=":material/play_arrow:",
                      type="primary")
        st.button("Step", key="loss_lab.step", on_click=_ask, args=("step",), icon=":material/skip_next:",
                  disabled=active, help="One training step, then pause.")
        st.button("Reset", key="loss_lab.reset", on_click=_ask, args=("reset",), icon=":material/restart_alt:",
                  help="A fresh, untrained toy with the settings on the left.")
    if job.steps_done > 0 and st.session_state.get(SIG_KEY) != sig:
        st.warning("You changed settings since this toy started. **Play** goes on as it is; **Reset** starts "
                   "again with the new settings.", icon=":material/tune:")


def _points_figure(trainer: lab.ToyTrainer) -> go.Figure:
    pts = trainer.points()
    y = trainer.labels.numpy()
    fig = go.Figure()
    if pts.shape[1] == 2:
        a = np.linspace(0, 2 * np.pi, 200)
        fig.add_scatter(x=np.cos(a), y=np.sin(a), mode="lines", line=dict(color="lightgrey", width=1),
                        hoverinfo="skip", showlegend=False)
        for c in range(trainer.cfg.n_classes):
            m = y == c
            fig.add_scatter(x=pts[m, 0], y=pts[m, 1], mode="markers", name=f"class {c}",
                            marker=dict(size=7, color=COLOURS[c], line=dict(width=0.5, color="white")))
        fig.update_xaxes(range=[-1.15, 1.15], showticklabels=False, zeroline=False)
        fig.update_yaxes(range=[-1.15, 1.15], showticklabels=False, zeroline=False, scaleanchor="x")
    else:
        for c in range(trainer.cfg.n_classes):
            m = y == c
            fig.add_scatter3d(x=pts[m, 0], y=pts[m, 1], z=pts[m, 2], mode="markers", name=f"class {c}",
                              marker=dict(size=3.5, color=COLOURS[c]))
        axis = dict(range=[-1.1, 1.1], showticklabels=False, title="")
        fig.update_layout(scene=dict(xaxis=axis, yaxis=axis, zaxis=axis, aspectmode="cube"))
    fig.update_layout(height=430, margin=dict(l=0, r=0, t=30, b=0), uirevision="toy",
                      title=dict(text=f"{trainer.cfg.n_points} points at step {trainer.step_count}", x=0,
                                 font=dict(size=14)),
                      legend=dict(orientation="h", y=-0.02))
    return fig


def _toy_status(job: jobs.TrainingJob) -> None:
    tr = job.trainer
    state = job.state
    st.progress(min(tr.step_count / max(job.target_steps, 1), 1.0),
                text=f"Step {tr.step_count} of {job.target_steps} · {state}")
    if job.error:
        st.error(job.error, icon=":material/error:")
    elif state == jobs.QUEUED:
        st.info("Waiting for a free training slot on this server…", icon=":material/hourglass_top:")


ACTIVE_AT_RENDER = job.active


@st.fragment(run_every=0.5 if ACTIVE_AT_RENDER else None)
def toy_panel() -> None:
    job = st.session_state.get(JOB_KEY)
    if job is None:
        return
    job.touch()  # watched: a job nobody polls pauses after its lease (core.runner)
    if ACTIVE_AT_RENDER and not job.active:
        st.rerun()  # finished or paused: a full rerun redraws the buttons and the batch below
    with user_errors("drawing the toy"):
        _toy_status(job)
        tr = job.trainer
        st.plotly_chart(_points_figure(tr), key="loss_lab.chart.points")
        evals = list(tr.evals)
        hist = list(tr.history)
        if evals:
            last = evals[-1]
            c1, c2, c3, c4 = st.columns(4)
            c1.metric("Alignment", f"{last.alignment:.3f}", help=gloss("alignment"))
            c2.metric("Uniformity", f"{last.uniformity:.2f}", help=gloss("uniformity"))
            c3.metric("Effective rank", f"{last.effective_rank:.2f}", help=gloss("effective rank"))
            c4.metric("kNN accuracy", f"{last.knn:.0%}", help=gloss("kNN accuracy"))
            st.plotly_chart(charts.alignment_uniformity([e.step for e in evals], [e.alignment for e in evals],
                                                        [e.uniformity for e in evals]), key="loss_lab.chart.au")
            st.caption(gloss("alignment / uniformity"))
        else:
            st.caption("Press **Play** (or **Step**): alignment and uniformity are measured every "
                       f"{tr.cfg.eval_every} steps.")
        if hist:
            st.plotly_chart(charts.loss([r.step for r in hist], [r.loss for r in hist]), key="loss_lab.chart.loss")


with toy_col:
    toy_panel()


# ------------------------------------------------------------------------------------------ 2. one batch
st.header("One batch, taken apart", help="A fixed batch of two views of each point, through the toy's model as it "
          "is now (train it a little, then come back). Change τ: the weights change at once.")


def _array_key(*arrays: np.ndarray) -> str:
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


@st.cache_data(max_entries=32, show_spinner=False)
def _comparison(key: str, _z1, _z2, _y, anchor: int, tau: float | None, margin: float, _queue):
    """The losses that use ``tau`` (None: the temperature-free ones, cached across τ moves)."""
    if tau is None:
        keys = [k for k in lab.COMPARED_LOSSES if k not in lab.TEMPERATURE_KEYS]
        return lab.compare_losses(_z1, _z2, _y, anchor=anchor, temperature=1.0, margin=margin, keys=keys)
    return lab.compare_losses(_z1, _z2, _y, anchor=anchor, temperature=tau, margin=margin, queue=_queue,
                              keys=lab.TEMPERATURE_KEYS)


def _on_pick() -> None:
    sel = st.session_state.get("loss_lab.chart.batch")
    points = (sel or {}).get("selection", {}).get("points", []) if isinstance(sel, dict) else \
        getattr(getattr(sel, "selection", None), "points", [])
    for p in points:
        row = _first_number(p.get("customdata"))
        if row is not None:
            st.session_state["loss_lab.anchor"] = row
            return


def _first_number(value) -> int | None:
    """The embedding row a clicked point carries: plotly sends customdata as a number, a list or a dict."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return _first_number(value[0]) if value else None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


trainer: lab.ToyTrainer = job.trainer
a_col, b_col = st.columns([1, 2.2], gap="large")
with a_col:
    batch_n = st.select_slider("Batch size", S.options("loss_lab.anatomy_batch"), **bind("loss_lab.anatomy_batch"),
                               help="N samples, 2N embeddings: each anchor has one positive and 2N − 2 negatives.")
    tau = st.select_slider("Temperature τ", S.options("loss_lab.tau"),
                           **bind("loss_lab.tau"), format_func=lambda t: f"{t:g}", help=gloss("temperature"))
    n_emb = 2 * int(batch_n)
    if int(st.session_state.get("loss_lab.anchor", 0)) >= n_emb:
        st.session_state["loss_lab.anchor"] = 0
    anchor = st.number_input("Anchor (or click a point)", 0, n_emb - 1, 0, key="loss_lab.anchor",
                             help="Row of the stacked batch [view 1; view 2]. Its positive is the other view of "
                                  "the same sample.")
with user_errors("taking the batch apart"):
    z1, z2, yb = trainer.batch(int(batch_n), seed=0)
    bd = lab.anchor_breakdown(z1, z2, int(anchor), float(tau), yb)
    zs = np.concatenate([z1, z2])
    ys = np.concatenate([yb, yb])
    with a_col:
        fig = go.Figure()
        coords = zs[:, :2]
        for c in np.unique(ys):
            m = ys == c
            fig.add_scatter(x=coords[m, 0], y=coords[m, 1], mode="markers", name=f"class {c}",
                            customdata=np.flatnonzero(m)[:, None], marker=dict(size=8, color=COLOURS[int(c)]),
                            hovertemplate="embedding %{customdata[0]}<extra></extra>")
        pos = (int(anchor) + int(batch_n)) % n_emb
        fig.add_scatter(x=[coords[anchor, 0]], y=[coords[anchor, 1]], mode="markers", name="anchor",
                        marker=dict(size=16, symbol="star", color="black"), customdata=[[int(anchor)]])
        fig.add_scatter(x=[coords[pos, 0]], y=[coords[pos, 1]], mode="markers", name="its positive",
                        marker=dict(size=14, symbol="circle-open", color=POS, line=dict(width=3)),
                        customdata=[[pos]])
        fig.update_xaxes(range=[-1.15, 1.15], showticklabels=False, zeroline=False)
        fig.update_yaxes(range=[-1.15, 1.15], showticklabels=False, zeroline=False, scaleanchor="x")
        fig.update_layout(height=340, margin=dict(l=0, r=0, t=30, b=0), showlegend=False, clickmode="event+select",
                          title=dict(text="The batch" + (" (first two coordinates)" if zs.shape[1] > 2 else ""),
                                     x=0, font=dict(size=14)))
        st.plotly_chart(fig, key="loss_lab.chart.batch", on_select=_on_pick, selection_mode="points")
        st.caption("Click a point to make it the anchor (★); the ring marks its positive.")

    with b_col:
        colours = [POS if p else FALSE_NEG if f else NEG for p, f in zip(bd.is_positive, bd.same_class)]
        rank = np.arange(1, len(bd.similarity) + 1)
        hover = [f"embedding {i}" for i in bd.index]
        bars = go.Figure()
        for j, (name, values, fmt) in enumerate((("similarity s", bd.similarity, ".2f"),
                                                 ("softmax weight p", bd.weight, ".3f"),
                                                 ("gradient share", bd.share, ".1%"))):
            axis = "" if j == 0 else str(j + 1)
            bars.add_bar(x=rank, y=values, marker_color=colours, name=name, hovertext=hover, showlegend=False,
                         xaxis=f"x{axis}", yaxis=f"y{axis}", hovertemplate="%{hovertext}: %{y:" + fmt + "}")
        bars.update_layout(
            height=430, margin=dict(l=10, r=10, t=30, b=10), bargap=0.05,
            xaxis=dict(anchor="y", showticklabels=False), xaxis2=dict(anchor="y2", showticklabels=False),
            xaxis3=dict(anchor="y3", title_text="other embeddings, most similar first"),
            yaxis=dict(domain=[0.70, 1.0], title_text="similarity", range=[-1, 1]),
            yaxis2=dict(domain=[0.36, 0.64], title_text="softmax"),
            yaxis3=dict(domain=[0.0, 0.30], title_text="grad share"),
            title=dict(text=f"Anchor {bd.anchor} at τ = {tau:g}: green = its positive, red = negatives, orange = "
                            "false negatives (same class)", x=0, font=dict(size=13)))
        st.plotly_chart(bars, key="loss_lab.chart.anchor")
        neg = ~bd.is_positive
        hardest = int(np.argmax(np.where(neg, bd.similarity, -np.inf)))
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("Anchor's loss", f"{bd.loss:.3f}", help=gloss("NT-Xent"))
        m2.metric("Positive's weight", f"{bd.positive_weight:.1%}", help=gloss("softmax weight"))
        m3.metric("Hardest share", f"{bd.share[hardest]:.1%}", help=gloss("hard negative"))
        m4.metric("Pushing negatives", f"{bd.effective_negatives:.1f}/{int(neg.sum())}",
                  help="1 / Σ share²: equals the number of negatives when all push equally, 1 when one does.")
        st.session_state["loss_lab._last_anchor"] = {
            "loss": bd.loss, "pos_weight": bd.positive_weight, "hardest_share": float(bd.share[hardest]),
            "hardest_sim": float(bd.similarity[hardest]), "false_negatives": int(bd.same_class.sum()),
            "tau": float(tau), "n_neg": int(neg.sum())}

    with st.expander("The formulas, with this anchor's numbers", icon=":material/function:", expanded=True):
        s_pos = bd.positive_similarity
        st.latex(r"\ell_i = -\log \frac{e^{s_{i,p}/\tau}}{\sum_{k \ne i} e^{s_{i,k}/\tau}}"
                 rf"= -\log \frac{{e^{{{s_pos:.3f}/{tau:g}}}}}{{{bd.denominator:.4g}}} = {bd.loss:.3f}")
        st.latex(r"p_k = \frac{e^{s_{i,k}/\tau}}{\sum_{j \ne i} e^{s_{i,j}/\tau}}, \qquad"
                 r"\frac{\partial \ell_i}{\partial s_{i,k}} = \frac{p_k - [k = p]}{\tau}")
        h_sim, h_w = float(bd.similarity[hardest]), float(bd.weight[hardest])
        st.latex(rf"\text{{hardest negative: }} s = {h_sim:.3f},\; p = {h_w:.4f},\;"
                 rf"\frac{{\partial \ell_i}}{{\partial s}} = \frac{{{h_w:.4f}}}{{{tau:g}}} = {h_w / tau:.4f},\;"
                 rf"\text{{share}} = \frac{{p}}{{\sum_{{\text{{neg}}}} p_j}} = {100 * bd.share[hardest]:.1f}\%")
        st.caption("The positive is pulled with the same total force that pushes all negatives: "
                   f"(1 − p_pos)/τ = {(1 - bd.positive_weight) / tau:.4f}. " + gloss("gradient share"))

    st.subheader("Every loss on this very batch", help="The same embeddings and labels through each loss of "
                 "core.losses. Autograd tells which pairs with the anchor carry gradient.")
    margin = float(st.session_state.get("loss_lab.margin", 0.5))
    queue = trainer.queue_keys() if trainer.cfg.loss == "info_nce" else None
    batch_key = _array_key(z1, z2, yb, *([queue] if queue is not None else []))
    results = _comparison(batch_key, z1, z2, yb, int(anchor), float(tau), margin, queue) + \
        _comparison(batch_key, z1, z2, yb, int(anchor), None, margin, None)
    order = bd.index  # other embeddings, most similar to the anchor first
    rel = np.stack([r.coupling[order] / max(r.coupling[order].max(), 1e-12) for r in results])
    # log scale per row, 1e-3 of the row's strongest pair and below drawn white: NT-Xent's many weak pairs show
    heat = np.where(rel > 0, (np.log10(np.maximum(rel, 1e-3)) + 3) / 3, 0.0)
    hm = go.Figure(go.Heatmap(z=heat, x=np.arange(1, len(order) + 1), y=[r.name for r in results],
                              colorscale="Greys", showscale=False,
                              customdata=rel, hovertemplate="%{y}, neighbour %{x}: %{customdata:.3f} of the row's "
                                                          "strongest<extra></extra>"))
    hm.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10),
                     title=dict(text=f"Which pairs with anchor {bd.anchor} get gradient (dark = strong, log scale "
                                     "per row; white = none)", x=0, font=dict(size=13)))
    hm.update_xaxes(title_text="other embeddings, most similar first")
    st.plotly_chart(hm, key="loss_lab.chart.pairs")
    st.dataframe(
        {"loss": [r.name for r in results], "value": [round(r.value, 4) for r in results],
         "embeddings with gradient": [f"{r.points_with_gradient} of {n_emb}" for r in results],
         f"pairs with anchor {bd.anchor}": [f"{r.pairs_with_gradient} of {n_emb - 1}" for r in results],
         "what gets gradient": [r.note for r in results]},
        hide_index=True, key="loss_lab.table.losses")
    st.caption(f"τ = {tau:g} for NT-Xent, InfoNCE and SupCon; margin {margin:g} for triplet and margin "
               "(the toy's margin setting). A pair 'gets gradient' when the anchor's gradient depends on the other "
               "point (a non-zero block of the Hessian).")
    st.session_state["loss_lab._last_losses"] = {r.key: r.value for r in results}


# ------------------------------------------------------------------------------------------ 3. presets
st.header("Reproduce the classics", help="Small seeded experiments on the toy or the built-in shapes. Where a textbook claim "
          "does not reproduce at this size, the page says so and shows the curve.")


@st.cache_data(max_entries=12, show_spinner=False)
def _preset(key: str):
    # The bar is drawn inside the cached function: a cache hit replays its messages, which must not refer to an
    # element made outside (another session's click failed with CacheReplayClosureError).
    bar = st.progress(0.0, text="Starting…")
    result = lab.run_preset(key, lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=m))
    bar.empty()
    return result


choice = st.selectbox("Experiment", list(lab.PRESETS), format_func=lambda k: lab.PRESETS[k][0],
                      key="loss_lab.preset")
run = st.button("Run it", key="loss_lab.run_preset", icon=":material/science:", type="primary",
                help="The first run trains small models here, with a progress bar; after that the result is "
                     "remembered for everyone.")
done = st.session_state.setdefault("loss_lab._presets", {})
if run:
    with user_errors("running the experiment"):
        done[choice] = _preset(choice)
result = done.get(choice)
if result is None:
    st.caption("Press **Run it** to train and measure.")
else:
    with st.container(border=True):
        st.markdown(f"**Claim.** {result.claim}")
        if result.reproduced:
            st.success(result.verdict, icon=":material/check_circle:")
        else:
            st.warning("**Does not fully reproduce here.** " + result.verdict, icon=":material/warning:")
        cols = st.columns(len(result.panels))
        for i, (panel, col) in enumerate(zip(result.panels, cols)):
            fig = go.Figure()
            for j, (name, ys_) in enumerate(panel.series.items()):
                if panel.kind == "bar":
                    fig.add_bar(x=panel.x, y=ys_, name=name, marker_color=COLOURS[j],
                                text=[f"{v:.2f}" for v in ys_], textposition="outside")
                else:
                    fig.add_scatter(x=panel.x, y=ys_, mode="lines+markers", name=name, line=dict(color=COLOURS[j]))
            fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10),
                              title=dict(text=panel.title, x=0, font=dict(size=13)),
                              legend=dict(orientation="h", y=-0.25))
            fig.update_xaxes(title_text=panel.x_label)
            fig.update_yaxes(title_text=panel.y_label)
            col.plotly_chart(fig, key=f"loss_lab.chart.preset.{i}")
        st.caption(f"Setup: {result.setup}. First run took {result.seconds:.1f} s.")

# ------------------------------------------------------------------------------------------ 4. words
st.header("Words", help="Every term the app uses, with the number on this page it refers to.")
evals = list(trainer.evals)
last_eval = evals[-1] if evals else None
an = st.session_state.get("loss_lab._last_anchor", {})
lv = st.session_state.get("loss_lab._last_losses", {})
head, collapse = done.get("head"), done.get("collapse")


def _fmt(v, spec: str = ".3f") -> str:
    return "—" if v is None else format(v, spec)


examples = {
    "NT-Xent": f"anchor {anchor}'s loss above: {_fmt(an.get('loss'))}; batch mean {_fmt(lv.get('nt_xent'))}",
    "InfoNCE": f"on the batch above, keys detached: {_fmt(lv.get('info_nce'))}",
    "triplet loss": f"semi-hard on the batch above: {_fmt(lv.get('triplet_semihard'))}",
    "margin contrastive": f"on the batch above: {_fmt(lv.get('margin'))}",
    "SupCon": f"on the batch above: {_fmt(lv.get('supcon'))}",
    "temperature": f"τ = {_fmt(an.get('tau'), 'g')} in the batch view; the hardest negative takes "
                   f"{_fmt(an.get('hardest_share'), '.1%')} of the push",
    "logit scale": f"1 / τ = {_fmt(1 / an['tau'] if an.get('tau') else None, '.1f')} for the batch view",
    "alignment": f"the toy now: {_fmt(last_eval.alignment if last_eval else None)}",
    "uniformity": f"the toy now: {_fmt(last_eval.uniformity if last_eval else None, '.2f')}",
    "effective rank": f"the toy now: {_fmt(last_eval.effective_rank if last_eval else None, '.2f')} "
                      f"of {trainer.cfg.dim}",
    "projection head": f"experiment 5: {head.verdict}" if head else "run experiment 5 to measure it",
    "hard negative": f"anchor {anchor}'s most similar negative: s = {_fmt(an.get('hardest_sim'))}",
    "false negative": f"{an.get('false_negatives', '—')} of anchor {anchor}'s {an.get('n_neg', '—')} negatives "
                      "share its class (orange bars)",
    "gradient share": f"the hardest negative's: {_fmt(an.get('hardest_share'), '.1%')}",
    "softmax weight": f"the positive's: {_fmt(an.get('pos_weight'), '.1%')}",
    "collapse": f"experiment 2: {collapse.verdict}" if collapse else "run experiment 2 to measure it",
    "kNN accuracy": f"the toy now: {_fmt(last_eval.knn if last_eval else None, '.0%')}",
    "modality gap": "not shown on this page: it needs an image and a text tower (CLIP-style training)",
    "PCA": "the Train page draws its 2-D view with PCA; the toy needs none: it lives in 2-D or 3-D",
}
st.dataframe({"term": list(TERMS), "what it means": list(TERMS.values()),
              "here on this page": [examples.get(t, "") for t in TERMS]},
             hide_index=True, key="loss_lab.glossary",
             column_config={"what it means": st.column_config.TextColumn(width="large"),
                            "here on this page": st.column_config.TextColumn(width="medium")})
