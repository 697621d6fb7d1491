"""The Streamlit page ``bench_browser_cost.py`` serves: one of the Train page's live elements at a time, chosen
by ``CP_COST_MODE``, drawn with the app's own chart builders (``ui.charts``), CSS (``ui.widgets.PAGE_CSS``) and
redraw periods (``ui.jobs.REFRESH_ALONE`` / ``REFRESH_BUSY``). The data is synthetic and changes on every
redraw, as a training job's would (except in ``same_charts``)."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from ui import charts, jobs, widgets  # noqa: E402

MODE = os.environ.get("CP_COST_MODE", "empty")
STATUS_S, CHARTS_S = jobs.REFRESH_BUSY if MODE == "classroom" else jobs.REFRESH_ALONE
FACTORS = ["shape", "colour", "size", "x", "y"]

st.set_page_config(layout="wide")
if MODE != "status_animated":
    st.html(widgets.PAGE_CSS)


def figures(k: int) -> list:
    """The Train page's five live charts at "step" 50 + k (k fixed: the same figures every time)."""
    rng = np.random.default_rng(k)
    n = 50 + k % 900
    steps = np.arange(n)
    evals = list(range(0, n, 25))
    acc = {f: list(rng.uniform(0.2, 1.0, len(evals))) for f in FACTORS}
    return [
        charts.loss(steps, 5 - np.log1p(steps) / 3 + rng.normal(0, 0.1, n)),
        charts.knn(evals, acc, {f: 0.2 for f in FACTORS}),
        charts.alignment_uniformity(evals, rng.uniform(size=len(evals)), rng.uniform(size=len(evals))),
        charts.similarity_histogram(rng.uniform(0, 1, 400), rng.uniform(-1, 1, 5000), n),
        charts.embedding_scatter(rng.normal(size=(400, 2)), rng.integers(0, 5, 400), FACTORS, title="2-D view",
                                 hover=[str(i) for i in range(400)]),
    ]


@st.fragment(run_every=STATUS_S)
def status() -> None:
    t = time.time()
    st.progress((t % 100) / 100, text=f"Step {int(t * 10) % 1000} of 1,000 · 14.0 steps/s · running")
    st.caption(":material/groups: 1 of 1 training on this server.")


@st.fragment(run_every=CHARTS_S)
def live_charts() -> None:
    k = 0 if MODE == "same_charts" else int(time.time() / CHARTS_S)
    if MODE == "vega_charts":  # five Vega-Lite line charts of the same sizes instead of plotly
        import pandas as pd

        rng = np.random.default_rng(k)
        for i in range(5):
            st.line_chart(pd.DataFrame(rng.normal(size=(50 + k % 900, 3)).cumsum(0), columns=list("abc")),
                          height=260)
        return
    figs = figures(k)
    if MODE == "one_chart":
        figs = figs[:1]
    elif MODE == "subplots":
        figs = [_one_figure(figs[:4]), figs[4]]
    config = {"staticPlot": True} if MODE == "static_charts" else None
    theme = None if MODE == "theme_none" else "streamlit"
    for i, fig in enumerate(figs):
        st.plotly_chart(fig, key=f"chart{i}", config=config, theme=theme)


def _one_figure(figs: list):
    """The four metric charts as the panels of one plotly figure (one chart element to redraw instead of four)."""
    from plotly.subplots import make_subplots

    out = make_subplots(rows=2, cols=2, subplot_titles=[f.layout.title.text for f in figs], vertical_spacing=0.12)
    for i, fig in enumerate(figs):
        for trace in fig.data:
            out.add_trace(trace, row=i // 2 + 1, col=i % 2 + 1)
    out.update_layout(height=520, margin=dict(l=10, r=10, t=40, b=10), showlegend=False)
    return out


if MODE == "status_sidebar":  # a sidebar of settings like the Train page's, which the status fragment leaves alone
    with st.sidebar:
        for i in range(12):
            st.selectbox(f"Setting {i}", ["a", "b", "c"], key=f"sel{i}")
            st.slider(f"Value {i}", 0.0, 1.0, 0.5, key=f"sl{i}")
            st.checkbox(f"Switch {i}", key=f"cb{i}")
if MODE == "empty":
    st.write("An empty page.")
else:
    status()
    if MODE in ("charts", "same_charts", "classroom", "one_chart", "static_charts", "vega_charts", "theme_none",
                "subplots"):
        live_charts()
