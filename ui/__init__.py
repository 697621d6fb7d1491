"""Streamlit-only helpers shared by the pages: settings and URL sync, session registry, cached loaders,
common widgets, background training jobs and plotly charts.

Nothing here does maths; it reads widgets, calls ``core`` and renders. Modules used on the start path
(``settings``, ``registry``, ``presets``, ``warmup``) import no torch at module level, so the home page
is interactive before torch has finished loading.
"""
