"""A one-chart Streamlit app for benchmarks/server/bench_map_engines.py: ?engine=plotly|deck&n=N draws N points
(plotly Scattergl with box/lasso, or deck.gl thumbnails from one sprite atlas via ui.thumbmap) and writes what
the chart returned ("returned=...") so the benchmark can time a selection's way back to Python."""
import sys
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

engine = st.query_params.get("engine", "plotly")
n = int(st.query_params.get("n", "2000"))
rng = np.random.default_rng(0)
coords = rng.normal(size=(n, 2)).astype(np.float32)
if engine == "plotly":
    fig = go.Figure(go.Scattergl(x=coords[:, 0], y=coords[:, 1], mode="markers", customdata=np.arange(n),
                                 marker=dict(size=4, color=rng.integers(0, 6, n), colorscale="Turbo")))
    fig.update_layout(height=560, dragmode="select", margin=dict(l=10, r=10, t=10, b=10))
    event = st.plotly_chart(fig, key="chart", on_select="rerun", selection_mode=("points", "box", "lasso"))
    st.markdown(f"returned={len(event.selection.points)}")
else:
    from ui.thumbmap import thumbnail_map

    from core.data import load_dataset
    from ui.loaders import to_uint8_hwc

    images = to_uint8_hwc(load_dataset("shapes", n=n, size=32, seed=0).images)
    row = thumbnail_map(coords, images, [f"item {i}" for i in range(n)], cache_key=f"bench{n}", key="chart")
    st.markdown(f"returned={row}")
