"""Text: semantic search over sentences, why a result ranks where it does, and contrastive fine-tuning.

A sentence model (core.text; the bundled all-MiniLM-L6-v2 by default) turns texts into unit vectors; search is
exact faiss inner product; fine-tuning runs sentence-transformers' MultipleNegativesRankingLoss in a job with its
own worker process (core.runner via ui.jobs) that a fragment polls; the page's tuner is the job's mirror.
"""
from __future__ import annotations

from ui.router import require as _routed

_routed()  # a page opened before app.py ever ran: route it through app.py (ui/router.py)

import hashlib

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from ui import charts, jobs, loaders, registry, session
from ui.widgets import user_errors
from ui import settings as S
from ui.urlstate import bind

JOB_KEY = "text._job"
CACHE_KEY = "text._vectors"
SPEC_KEY = "text._shared_spec"  # the loaders.text_model spec of the model in use; None for a session's own model
OTHER = "Another model (name or folder)…"
EXAMPLES = ("how do bats find food in the dark", "why is the sky full of twinkling stars",
            "keep my money safe from scams", "what makes bread rise", "who can handle the ball")
TEMPERATURES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
PAIR_SOURCES = {
    "topic": "Sentences of one topic (built-in)",
    "qa": "Questions and answers (built-in)",
    "upload": "My own pairs file",
}

st.title("Text")
st.caption("A sentence model places every text as a point on a sphere: texts that mean the same land close "
           "together. Search for a meaning, see why a result ranks where it does, and fine-tune the model on "
           "your own pairs with the same contrastive loss that trained it.")

with st.spinner("Loading the text engine…"):
    from core import text as T
    from core.errors import PlaygroundError


# ------------------------------------------------------------------------------------------ helpers
def _digest(texts) -> str:
    h = hashlib.sha1()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def vectors_for(model, texts: list[str], what: str) -> np.ndarray:
    """Unit vectors of ``texts`` (N, D), cached by model and content: for every session when the model is a
    shared one (``spec``), else in this session, with a progress bar."""
    spec = st.session_state.get(SPEC_KEY)
    if spec is not None:
        from ui.textembed import shared_vectors

        return shared_vectors(spec, texts, what)
    cache: dict = st.session_state.setdefault(CACHE_KEY, {})
    key = (id(model), T.model_label(model), _digest(texts))
    if key not in cache:
        bar = st.progress(0.0, text=f"Embedding {len(texts):,} {what}…") if len(texts) > 64 else None

        def tick(done: int, total: int) -> None:
            if bar is not None:
                bar.progress(done / max(total, 1), text=f"Embedding {what}: {done:,} of {total:,}")

        cache[key] = T.embed_texts(model, texts, progress=tick)
        if bar is not None:
            bar.empty()
        while len(cache) > 12:  # oldest first out
            cache.pop(next(iter(cache)))
    return cache[key]


def _short(text: str, n: int = 90) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _register_job(job) -> None:
    if job is None or job.active or not job.needs_registration:
        return
    tuner = job.trainer
    model = tuner.frozen_model()
    entry = registry.register_text_model(model, name=T.model_label(model), source=tuner.describe())
    job.mark_registered()
    st.toast(f"Saved to your session: **{entry.name}**", icon=":material/inventory_2:")


# ------------------------------------------------------------------------------------------ model and texts
_register_job(st.session_state.get(JOB_KEY))
settings_col, main_col = st.columns([1, 2.3], gap="large")
model = None
textset = None
with settings_col:
    with st.container(border=True):
        st.markdown("**Model**")
        tuned = [e.name for e in registry.entries(["text"]) if e.name != T.BUNDLED]
        choice = st.selectbox("Sentence model", [T.BUNDLED, *tuned, OTHER], key="text.model",
                              help="The bundled all-MiniLM-L6-v2 (384 numbers per text) works offline. Models "
                                   "you fine-tune below appear here too.")
        st.session_state[SPEC_KEY] = None
        with user_errors("loading the text model"):
            if choice == OTHER:
                spec = st.text_input("Model name or folder", key="text.model_spec",
                                     placeholder="sentence-transformers/all-MiniLM-L6-v2 or /path/to/folder",
                                     help="A sentence-transformers model: a hub name (needs the network or a "
                                          "cached copy) or a folder saved with SentenceTransformer.save().")
                if spec.strip():
                    model = loaders.text_model(spec.strip())
                    st.session_state[SPEC_KEY] = spec.strip()
                    registry.register_text_model(model, name=T.model_label(model), source=f"loaded from {spec}")
                else:
                    st.caption("Type a model name or a folder path.")
            elif choice == T.BUNDLED:
                model = loaders.text_model("")
                st.session_state[SPEC_KEY] = ""
                if registry.get(T.BUNDLED) is None:
                    registry.register_text_model(model, name=T.BUNDLED,
                                                 source="sentence-transformers, bundled offline (384-d)")
            else:
                model = registry.get(choice).payload
        if model is not None:
            st.caption(f"{T.model_label(model)} · {T.embedding_dim(model)} dimensions")

    with st.container(border=True):
        st.markdown("**Texts to search**")
        source = st.radio("Texts", ["Built-in corpus", "Paste a list", "Upload a file"], key="text.source",
                          label_visibility="collapsed",
                          help="The built-in corpus has about 300 sentences on 10 topics, with questions whose "
                               "answers are known, so retrieval can be measured.")
        with user_errors("reading the texts"):
            if source == "Built-in corpus":
                textset = loaders.text_corpus()
            elif source == "Paste a list":
                pasted = st.text_area("One text per line", key="text.paste", height=160,
                                      placeholder="The cat sat on the mat.\nA dog slept by the door.")
                if pasted.strip():
                    from ui.textembed import cap_paste

                    textset = cap_paste(T.texts_from_paste(pasted))
            else:
                up = st.file_uploader("A .csv, .jsonl or .txt file (UTF-8)", type=["csv", "jsonl", "txt"],
                                      key="text.upload",
                                      help=f"CSV: a 'text' column (and optionally 'label' or 'topic'). JSONL: one "
                                           f"object with a 'text' field per line. TXT: one text per line. Up to "
                                           f"{T.MAX_TEXT_FILE_BYTES // 2**20} MB, {T.MAX_TEXTS:,} texts of at most "
                                           f"{T.MAX_TEXT_CHARS:,} characters.")
                if up is not None:
                    if up.size > T.MAX_TEXT_FILE_BYTES:  # before reading it into memory
                        raise PlaygroundError(f"{up.name!r} is {up.size / 2**20:.1f} MB; text files are limited "
                                              f"to {T.MAX_TEXT_FILE_BYTES // 2**20} MB.")
                    textset = T.texts_from_upload(up.getvalue(), up.name)
            if textset is not None:
                st.caption(f"{len(textset):,} texts" + (f" · labelled by {', '.join(textset.labels)}"
                                                         if textset.labels else ""))
                for note in textset.notes:
                    st.info(note, icon=":material/info:")
            elif source != "Built-in corpus":
                st.caption("Nothing to search yet.")

ready = model is not None and textset is not None
passage_vectors = None
if ready:
    with main_col, user_errors("embedding the texts"):
        passage_vectors = vectors_for(model, list(textset.texts), "texts")
        if registry.get(T.model_label(model)) is not None and textset is not loaders.text_corpus():
            # the registry entry maps what the user is looking at now (the Explorer hovers the sentences)
            registry.register_text_model(model, name=T.model_label(model), source=registry.get(
                T.model_label(model)).source, textset=textset, vectors=passage_vectors)
ready = ready and passage_vectors is not None


def _topics() -> list[str] | None:
    if textset is None or not textset.labels:
        return None
    factor = next(iter(textset.labels))
    names = textset.classes[factor]
    return [names[c] for c in textset.labels[factor]]


# ------------------------------------------------------------------------------------------ tabs
with main_col:
    search_tab, why_tab, tune_tab = st.tabs([":material/search: Search", ":material/help: Why this result",
                                             ":material/model_training: Fine-tune"])


def _set_example() -> None:
    pick = st.session_state.get("text.example")
    if pick:
        st.session_state["text.query"] = pick
    st.session_state["text.example"] = None


st.session_state.setdefault("text.query", EXAMPLES[0])  # set once here, so the example pills can change it
query_vector = None
order = None
with search_tab:
    st.pills("Try a query", EXAMPLES, key="text.example", on_change=_set_example,
             help="One click puts the query in the box.")
    query = st.text_input("Query", key="text.query",
                          help="Any sentence. It is embedded by the model and compared with every text by cosine "
                               "similarity (1 = same direction, 0 = unrelated).")
    c1, c2 = st.columns(2)
    k = c1.slider("Results (k)", 1, 20, **bind("text.k"), help="How many of the nearest texts to show.")
    kind = c2.selectbox("Index", list(T.INDEX_KINDS), key="text.index", format_func=lambda x: T.INDEX_KINDS[x],
                        help=f"Exact search scores every text and is fast enough below about "
                             f"{T.APPROXIMATE_ABOVE:,} texts. Approximate indexes (HNSW, IVF) are for millions; "
                             "their recall against exact search is measured on your texts and shown.")
    if not ready:
        st.info("Choose a model and some texts on the left.", icon=":material/arrow_back:")
    elif query.strip():
        with user_errors("searching"):
            query_vector = T.embed_texts(model, [query.strip()])
            index = T.build_index(passage_vectors, kind)
            scores, ids = T.search(index, query_vector, k)
            topics = _topics()
            rows = {"rank": list(range(1, len(ids[0]) + 1)), "cosine": [float(s) for s in scores[0]],
                    "text": [textset.texts[i] for i in ids[0]]}
            if topics:
                rows["topic"] = [topics[i] for i in ids[0]]
            with st.container(border=True, key="text.best"):
                st.markdown(f"**Best match** · cosine {scores[0][0]:.3f}  \n{textset.texts[ids[0][0]]}")
            st.dataframe(rows, key="text.results", hide_index=True, width="stretch",
                         column_config={"cosine": st.column_config.ProgressColumn(
                             "cosine", min_value=0.0, max_value=1.0, format="%.3f",
                             help="Cosine similarity of the query and the text")})
            order = np.argsort(-(passage_vectors @ query_vector[0]), kind="stable")
            if kind != "exact":
                sample = passage_vectors[:: max(1, len(passage_vectors) // 200)]
                recall = T.approximate_recall(index, passage_vectors, sample, k)
                st.metric(f"Recall@{k} of this {kind.upper()} index vs exact", f"{recall:.3f}",
                          help="For up to 200 of your texts used as queries: the share of the exact top-k "
                               "that the approximate index also returns. 1.0 = it never misses.")
                st.caption(f"{index.describe()}. On {len(passage_vectors):,} texts exact search is the "
                           "better choice; approximate indexes pay off above about a million.")
            else:
                st.caption(f"Exact search over {len(passage_vectors):,} texts: the top {k} are always right.")

with why_tab:
    if order is None:
        st.info("Search for something first (Search tab).", icon=":material/search:")
    else:
        with user_errors("explaining the result"):
            st.markdown(f"For the query **{_short(query, 120)}**, pick any text to see where it ranks and what "
                        "beats it.")
            target = st.selectbox("Text", order.tolist(), index=min(2, len(order) - 1), key="text.why_target",
                                  format_func=lambda i: _short(textset.texts[i]),
                                  help="Listed from the most to the least similar to the query.")
            ex = T.explain(query_vector, passage_vectors, int(target), n=5)
            m1, m2, m3 = st.columns(3)
            m1.metric("Cosine similarity", f"{ex.similarity:.3f}")
            m2.metric("Rank", f"{ex.rank} of {len(order):,}")
            m3.metric("Texts that beat it", f"{ex.n_above:,}")
            if ex.beaten_by:
                st.markdown("**Closer to the query than this text:**")
                st.dataframe({"cosine": [s for _, s in ex.beaten_by],
                              "margin": [s - ex.similarity for _, s in ex.beaten_by],
                              "text": [textset.texts[i] for i, _ in ex.beaten_by]}, hide_index=True,
                             width="stretch", key="text.why_above",
                             column_config={"margin": st.column_config.NumberColumn(
                                 format="+%.3f", help="How much more similar to the query than the chosen text")})
            else:
                st.success("Nothing beats it: this is the top result.", icon=":material/emoji_events:")

    st.divider()
    st.markdown("**How good is retrieval? Measured on questions with known answers**")
    if not ready or textset is not loaders.text_corpus():
        st.caption("Recall@k and MRR need labelled queries: choose the built-in corpus, whose 121 questions each "
                   "have one answer sentence.")
    else:
        with user_errors("measuring retrieval"):
            pairs = T.load_pairs()
            rel = T.relevant_indices(pairs, textset.texts)
            qv = vectors_for(model, [p.query for p in pairs], "questions")
            report = T.retrieval_metrics(qv, passage_vectors, rel, ks=(1, 5, 10))
            cols = st.columns(4)
            for col, kk in zip(cols, (1, 5, 10)):
                col.metric(f"Recall@{kk}", f"{report.recall[kk]:.3f}",
                           help=f"Share of the questions whose answer is among the top {kk} results.")
            cols[3].metric("MRR", f"{report.mrr:.3f}", help="Mean reciprocal rank: 1 / the answer's rank, "
                                                           "averaged. 1.0 = every answer comes first.")
            counts = np.bincount(np.minimum(report.ranks, 11), minlength=12)[1:]
            fig = go.Figure(go.Bar(x=[str(i) for i in range(1, 11)] + ["over 10"], y=counts,
                                   marker_color=charts.PALETTE[0]))
            fig.update_layout(title=dict(text="Where each question's answer ranks", x=0, font=dict(size=14)),
                              height=240, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="rank",
                              yaxis_title="questions")
            st.plotly_chart(fig, key="text.chart.ranks")
            misses = [i for i in np.argsort(-report.ranks) if report.ranks[i] > 1][:3]
            if misses:
                st.caption("Hardest questions: " + "; ".join(f"“{pairs[i].query}” (answer at rank "
                                                              f"{report.ranks[i]})" for i in misses) + ".")


# ------------------------------------------------------------------------------------------ fine-tuning
def _ask(action: str) -> None:
    st.session_state["text._action"] = action


def _make_tuner():
    """A TextFineTuner for the chosen pairs and knobs (a deep copy of the current model)."""
    cfg = T.FineTuneConfig(steps=int(st.session_state["text.steps"]),
                           temperature=float(st.session_state["text.temperature"]),
                           hard_negatives=bool(st.session_state["text.hard_negatives"]),
                           match="topic" if st.session_state["text.pairs"] == "topic" else "positive")
    corpus = loaders.text_corpus()
    topics = [corpus.classes["topic"][c] for c in corpus.labels["topic"]]
    kind = st.session_state["text.pairs"]
    if kind == "topic":
        train, held = T.topic_pairs(corpus, seed=cfg.seed)
        return T.TextFineTuner(cfg, train, model, passages=corpus.texts, passage_topics=topics, heldout=held)
    if kind == "qa":
        return T.TextFineTuner(cfg, T.load_pairs(), model, passages=corpus.texts)
    pairs = st.session_state.get("text._pairs")
    if not pairs:
        raise PlaygroundError("Upload a pairs file first (.csv or .jsonl with query and positive columns).")
    return T.TextFineTuner(cfg, pairs, model)


with tune_tab:
    st.markdown("Contrastive fine-tuning pulls each query towards its positive and away from the other "
                "positives in the batch (in-batch negatives; sentence-transformers' MultipleNegativesRankingLoss, "
                "the InfoNCE loss that trained this model). Held-out pairs measure recall@k before and after.")
    c1, c2 = st.columns(2)
    pair_kind = c1.selectbox("Pairs", list(PAIR_SOURCES), format_func=PAIR_SOURCES.get, key="text.pairs",
                             help="Topic pairs teach the corpus's 10 topics: a held-out sentence should find "
                                  "sentences of its own topic. Question-answer pairs are what MiniLM already does "
                                  "well, so there is little left to gain. Or bring your own pairs.")
    steps = c2.select_slider("Steps", S.options("text.steps"), **bind("text.steps"),
                             help="Each step is one batch of pairs. 30 steps take about half a minute on a laptop.")
    c3, c4 = st.columns(2)
    c3.select_slider("Temperature", S.options("text.temperature"), **bind("text.temperature"),
                     help="Divides the cosine similarities before the softmax (the loss's scale is 1 / "
                          "temperature; 0.05 is sentence-transformers' default). Low: only the hardest negatives "
                          "matter. High: every negative counts alike and the push is gentle.")
    c4.toggle("Hard negatives", key="text.hard_negatives",
              help="Add one deliberately confusing passage per pair: the one the model ranks highest that is not "
                   "the answer (or the pair file's own 'negative'). Makes the task harder and the training sharper.")
    if pair_kind == "upload":
        up = st.file_uploader("Pairs (.csv or .jsonl): query, positive[, negative]", type=["csv", "jsonl"],
                              key="text.pairs_upload")
        if up is not None and st.session_state.get("text._pairs_id") != up.file_id:
            st.session_state["text._pairs_id"] = up.file_id
            st.session_state.pop("text._pairs", None)
            with user_errors("reading the pairs"):
                if up.size > T.MAX_TEXT_FILE_BYTES:
                    raise PlaygroundError(f"{up.name!r} is {up.size / 2**20:.1f} MB; pairs files are limited to "
                                          f"{T.MAX_TEXT_FILE_BYTES // 2**20} MB.")
                st.session_state["text._pairs"] = T.pairs_from_upload(up.getvalue(), up.name)
        if st.session_state.get("text._pairs"):
            st.caption(f"{len(st.session_state['text._pairs']):,} pairs read.")

    action = st.session_state.pop("text._action", None)
    job = st.session_state.get(JOB_KEY)
    with user_errors("fine-tuning"):
        if action == "play" and model is not None:
            ended = job is not None and (job.state in (jobs.FINISHED, jobs.STOPPED)
                                         or job.state == jobs.FAILED and not job.crashed)
            if job is None or ended:
                if job is not None:
                    _register_job(job)
                    job.close()
                with st.spinner("Preparing the fine-tuning run…"):
                    # The worker loads the shared model itself from its spec (None: this session's own model,
                    # whose weights travel to it).
                    job = session.own(jobs.TrainingJob(_make_tuner(),
                                                       options={"text_spec": st.session_state.get(SPEC_KEY)}))
                st.session_state[JOB_KEY] = job
            job.play()  # a paused run goes on; a crashed worker restarts from the last weights it sent
        elif action == "pause" and job is not None:
            job.pause()
            job.wait(2.0)
        elif action == "stop" and job is not None:
            job.stop()
            job.wait(30.0)
            _register_job(job)
        elif action == "reset" and job is not None:
            job.pause()
            job.wait(30.0)
            _register_job(job)
            job.close()
            st.session_state.pop(JOB_KEY, None)
            job = None
    active = job is not None and job.active
    paused = job is not None and job.state == jobs.PAUSED
    with st.container(horizontal=True, gap="small"):
        if active:
            st.button("Pause", key="text.pause", on_click=_ask, args=("pause",), type="primary",
                      icon=":material/pause:", help="Pause after this step; Fine-tune goes on from here.")
        else:
            st.button("Go on" if paused else "Fine-tune", key="text.play", on_click=_ask, args=("play",),
                      type="primary", icon=":material/play_arrow:", disabled=model is None,
                      help="Go on from where the run paused." if paused else
                      "Start a run with these settings in the background (a finished run starts afresh).")
        st.button("Stop", key="text.stop", on_click=_ask, args=("stop",), icon=":material/stop:",
                  disabled=job is None or not (active or paused), help="Stop and keep the model as it is now.")
        st.button("Reset", key="text.reset", on_click=_ask, args=("reset",), icon=":material/restart_alt:",
                  disabled=job is None, help="Clear the run; a model that trained is kept in your session.")

active_at_render = st.session_state.get(JOB_KEY) is not None and st.session_state[JOB_KEY].active


@st.fragment(run_every=1.0 if active_at_render else None)
def tune_panel() -> None:
    """Progress, live loss and recall before vs after, redrawn each second while the run is active."""
    job = st.session_state.get(JOB_KEY)
    if job is not None:
        job.touch()  # watched: a job nobody polls pauses after its lease (core.runner)
    if active_at_render and (job is None or not job.active):
        st.rerun()  # the run ended: a full rerun registers the model and redraws the buttons
    if job is None:
        st.info("Press **Fine-tune** to start. The first evaluation is the model before any training.",
                icon=":material/play_circle:")
        return
    tuner = job.trainer
    hist, evals = list(tuner.history), list(tuner.evals)
    done, target, state = tuner.step_count, job.target_steps, job.state
    secs = hist[-1].seconds if hist else 0.0
    st.progress(min(done / max(target, 1), 1.0), text=f"Step {done} of {target} · {secs:.0f} s of training · "
                                                      f"{state}")
    if state == jobs.QUEUED:
        st.info(f"Queued behind {job.queue_position or 0} other training job(s) on this server; it starts by "
                "itself.", icon=":material/hourglass_top:")
    elif state == jobs.FAILED:
        st.error(job.error or "Fine-tuning stopped.", icon=":material/warning:")
    elif state in (jobs.FINISHED, jobs.STOPPED):
        st.success(f"{'Finished' if state == jobs.FINISHED else 'Stopped at'} step {done}. The fine-tuned model "
                   "is in your session: choose it under **Model** to search with it.",
                   icon=":material/check_circle:")
    st.caption(f"{len(tuner.train_pairs)} training pairs, {len(tuner.heldout)} held out, searched among "
               f"{len(tuner.passages)} passages.")
    if evals:
        first, last = evals[0], evals[-1]
        cols = st.columns(len(first.recall) + 1)
        for col, (kk, before) in zip(cols, first.recall.items()):
            col.metric(f"Held-out recall@{kk}", f"{last.recall[kk]:.3f}",
                       delta=f"{last.recall[kk] - before:+.3f}" if last.step != first.step else None,
                       help=f"Before training: {before:.3f}. Share of held-out queries with a right answer in "
                            f"the top {kk}.")
        cols[-1].metric("Held-out MRR", f"{last.mrr:.3f}",
                        delta=f"{last.mrr - first.mrr:+.3f}" if last.step != first.step else None,
                        help=f"Before training: {first.mrr:.3f}.")
    c1, c2 = st.columns(2)
    with c1:
        if hist:
            st.plotly_chart(charts.loss([r.step for r in hist], [r.loss for r in hist]), key="text.chart.loss")
        else:
            st.caption("The loss appears after the first step (the first evaluation runs before it).")
    with c2:
        if evals:
            fig = go.Figure()
            for i, kk in enumerate(evals[0].recall):
                fig.add_scatter(x=[e.step for e in evals], y=[e.recall[kk] for e in evals], mode="lines+markers",
                                name=f"recall@{kk}", line=dict(color=charts.PALETTE[i]))
            fig.update_layout(title=dict(text="Held-out recall", x=0, font=dict(size=14)), height=260,
                              margin=dict(l=10, r=10, t=40, b=10), yaxis=dict(range=[0, 1.02]),
                              xaxis_title="step", legend=dict(orientation="h", y=1.0, yanchor="bottom", x=1,
                                                              xanchor="right"))
            st.plotly_chart(fig, key="text.chart.recall")


with tune_tab:
    tune_panel()
