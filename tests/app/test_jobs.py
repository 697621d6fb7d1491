"""ui.jobs, the pages' glue over core.runner (whose jobs, admission and faults tests/core/test_runner.py checks):
the redraw periods, the server's load line, and what the warm-up leaves the first Play."""
from __future__ import annotations

from ui import jobs


def test_server_load_counts_running_and_queued():
    slots = jobs.Slots(1)
    assert jobs.server_load(slots) == (0, 0)
    slots.request(1)
    slots.request(2)
    slots.admit()
    assert jobs.server_load(slots) == (1, 2)
    slots.release(1)
    slots.admit()
    slots.release(2)
    assert jobs.server_load(slots) == (0, 0)


def test_pages_redraw_less_often_while_more_jobs_train_or_wait_than_there_are_cores():
    """A classroom (more jobs than cores, queued ones counted) gets the slower redraw periods; one or two
    users on two cores keep the quick ones."""
    slots = jobs.Slots(1)
    assert jobs.refresh_seconds(slots, cores=2) == jobs.REFRESH_ALONE
    for job_id in (1, 2):
        slots.request(job_id)
    slots.admit()
    assert jobs.refresh_seconds(slots, cores=2) == jobs.REFRESH_ALONE  # 2 jobs on 2 cores
    slots.request(3)
    assert jobs.refresh_seconds(slots, cores=2) == jobs.REFRESH_BUSY  # 1 training + 2 queued > 2 cores
    assert jobs.refresh_seconds(slots, cores=4) == jobs.REFRESH_ALONE
    busy_status, busy_charts = jobs.REFRESH_BUSY
    alone_status, alone_charts = jobs.REFRESH_ALONE
    assert busy_status > alone_status and busy_charts > alone_charts


def test_the_served_app_does_not_collect_garbage_after_every_run(served_config):
    """Streamlit's default gc.collect(2) after each script run held the GIL ~0.4 s per status tick (once a
    second per session), stalling every other session's page: the served app's config turns it off."""
    assert served_config["options"]["runner.postScriptGC"] is False


def test_warm_up_leaves_the_first_trainer_nothing_to_import():
    """The first optimizer of a process imported torch._dynamo (~880 modules, ~2.2 s here) inside the first
    lesson's Play (the server builds the job's mirror trainer); the warm-up builds one first. Checked in a fresh
    interpreter: this one has them loaded."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "import core.train\n"
        "from ui import warmup\n"
        "warmup._first_step_ready()\n"
        "from core.data import load_dataset\n"
        "from core.train import Trainer, TrainConfig\n"
        "ds = load_dataset('shapes', n=120)\n"
        "before = set(sys.modules)\n"
        "Trainer(TrainConfig(batch_size=8, steps=1), ds).step()\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
