"""Settings: one declaration with core (one sentence for a bad value everywhere), JSON export/import and the URL
reproduce a lesson, and the start path stays torch-free."""
from __future__ import annotations

import json

import pytest

from tests.app.conftest import assert_clean
from ui import settings as S


# An out-of-bounds value and the one sentence every path gives for it (written out here, not derived).
OUT_OF_BOUNDS = [
    ("train.steps", 200_000, "'train.steps' must be between 1 and 100,000; got 200,000."),
    ("train.temperature", 20.0, "'train.temperature' must be between 0.0001 and 10; got 20."),
    ("train.seed", -1, "'train.seed' must be between 0 and 2,147,483,647; got -1."),
    ("aug.hue", 0.9, "'aug.hue' must be between 0 and 0.5; got 0.9."),
    ("aug.crop_scale", (0.01, 1.0), "'aug.crop_scale' must satisfy 0.05 <= low <= high <= 1; got [0.01, 1]."),
]


@pytest.mark.parametrize("key, value, sentence", OUT_OF_BOUNDS)
def test_out_of_bounds_value_is_refused_with_one_sentence_by_link_file_and_config(key, value, sentence):
    from core.augment import AugmentConfig
    from core.train import TrainConfig

    field = key.split(".", 1)[1]
    with pytest.raises(ValueError) as config_err:
        (TrainConfig if key.startswith("train.") else AugmentConfig)(**{field: value})
    raw = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
    with pytest.raises(ValueError) as link_err:
        S.from_url(key, raw)
    with pytest.raises(ValueError) as file_err:
        S.from_json(json.dumps({"settings": {key: list(value) if isinstance(value, tuple) else value}}),
                    namespaces=["train", "aug"])
    assert str(config_err.value) == sentence
    assert sentence in str(link_err.value)
    assert str(file_err.value) == "The settings file was not loaded: " + sentence


def test_a_bad_link_value_shows_cores_sentence_on_the_page():
    at = AppTest_with({"train.steps": "200000"})  # the link's first run says what it left out
    assert not at.exception
    assert "'train.steps' must be between 1 and 100,000; got 200,000." in " ".join(w.value for w in at.warning)
    at.switch_page("pages/train.py").run()
    assert_clean(at)
    assert at.session_state["train.steps"] == S.default("train.steps")


def test_table_offers_exactly_what_the_configs_accept():
    """The train.* / aug.* entries come from core's declaration: every choice the page offers builds a config,
    the bounds are the config's own (a step past them is refused), and the page's defaults differ from the
    dataclasses' only where the schema declares it (the shapes recipe; auto precision)."""
    from dataclasses import fields

    from core.augment import PRESETS, AugmentConfig
    from core.train import METHODS, MINING, PRECISIONS, TrainConfig

    assert S.options("train.method") == list(METHODS)
    assert set(S.options("train.mining")) == set(MINING) and set(S.options("train.precision")) == set(PRECISIONS)
    # label_factor and clip_model are the page's own ("" stands for None; train_config translates them).
    shared = [k for k in S.keys(["train", "aug"]) if k.split(".", 1)[1] in
              {f.name for f in fields(TrainConfig if k.startswith("train.") else AugmentConfig)}
              and k not in ("train.label_factor", "train.clip_model")]
    assert len(shared) == 12 + 19
    for key in shared:
        s, field = S.SETTINGS[key], key.split(".", 1)[1]
        make = (lambda v: TrainConfig(**{field: v})) if key.startswith("train.") else \
            (lambda v: AugmentConfig(**{field: v}))
        for option in s.options or ():
            make(option)  # every offered choice is a valid config
        if s.kind in ("int", "float"):
            make(s.low), make(s.high)
            step = 1 if s.kind == "int" else 1e-6
            for beyond in (s.low - step, s.high + step):
                with pytest.raises(ValueError, match=key):
                    make(beyond)
                with pytest.raises(ValueError, match=key):
                    S.coerce(key, beyond)
        if s.kind == "range":
            make((s.low, s.high))
            with pytest.raises(ValueError, match=key):
                make((s.low / 2, s.high))
    cfg, core = S.train_config(S.defaults(["train", "aug"])), TrainConfig()
    differ = {f.name for f in fields(cfg) if getattr(cfg, f.name) != getattr(core, f.name)}
    assert differ == {"augment", "precision"}  # the encoder too: arch, width and projection size are core's
    assert cfg.augment == PRESETS["shapes"] and cfg.precision == "auto"
    # The page's own setting that core does not check through TrainConfig: the encoders core can build.
    # (The default data is declared once, core.settings_schema.DEFAULT_DATASET, for both.)
    from core.models import ARCHS

    assert S.options("train.arch") == list(ARCHS)


def test_start_path_imports_no_torch():
    """Home opens fast: the modules app.py imports (and the settings schema they read) load without torch."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    modules = []
    for node in ast.parse((root / "app.py").read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module in ("ui", "core"):
            modules += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("ui", "core"):
            modules.append(node.module)
        elif isinstance(node, ast.Import):
            modules += [a.name for a in node.names if a.name.split(".")[0] in ("ui", "core")]
    modules += ["ui.settings", "core.settings_schema"]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print('torch' in sys.modules, 'ui.settings' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False True"
    assert len(modules) > 4  # app.py's own ui modules were found


@pytest.mark.parametrize("key,value", [
    ("train.temperature", 0.3333), ("train.temperature", "0.2"), ("train.method", "byol"),
    ("aug.crop_scale", [0.9, 0.1]), ("aug.flip", 1), ("train.seed", 1.5), ("aug.hue", 0.9), ("nope.x", 1),
])
def test_coerce_rejects_bad_values(key, value):
    with pytest.raises(ValueError):
        S.coerce(key, value)


def test_json_round_trip():
    values = S.defaults(["train", "aug"])
    values["train.temperature"] = 0.5
    values["aug.crop_scale"] = (0.4, 0.9)
    text = S.to_json(values, page="train")
    back = S.from_json(text.encode(), namespaces=["train", "aug"])
    assert back == values


def test_json_import_names_every_problem():
    bad = json.dumps({"settings": {"train.temperature": -1, "train.method": "byol"}})
    with pytest.raises(ValueError, match="train.temperature.*train.method"):
        S.from_json(bad, namespaces=["train", "aug"])
    with pytest.raises(ValueError, match="not valid JSON"):
        S.from_json(b"{oops", namespaces=["train"])


def _flush_url(at):
    """The URL the server wrote after the last run (ui.urlstate writes it after every page)."""
    return dict(at.query_params)


def test_link_reproduces_settings(make_app):
    """Settings changed in one session travel in the URL; a fresh session opened on it has them all."""
    at = make_app(page="pages/train.py")
    at.selectbox(key="train.method").set_value("moco").run()
    at.select_slider(key="train.queue_size").set_value(1024).run()
    at.select_slider(key="train.temperature").set_value(0.5).run()
    at.toggle(key="aug.rotation").set_value(True).run()
    at.slider(key="aug.crop_scale").set_range(0.4, 0.9).run()
    assert_clean(at)
    url = _flush_url(at)
    assert set(url) >= {"train.method", "train.queue_size", "train.temperature", "aug.rotation", "aug.crop_scale"}

    shared = make_app(query_params=url, page="pages/train.py")
    assert_clean(shared)
    assert shared.session_state["train.method"] == "moco"
    assert shared.session_state["train.queue_size"] == 1024
    assert shared.session_state["train.temperature"] == 0.5
    assert tuple(shared.session_state["aug.crop_scale"]) == (0.4, 0.9)
    assert shared.session_state["aug.rotation"] is True
    # The Lab shares the augmentations.
    shared.switch_page("pages/augmentation_lab.py").run()
    assert_clean(shared)
    assert shared.session_state["aug.rotation"] is True
    assert shared.slider(key="aug.rotation_degrees").value == 15.0


def test_hand_written_link(make_app):
    at = make_app(query_params={"train.temperature": "0.5", "train.steps": "50", "lab.image": "7"},
                  page="pages/train.py")
    assert at.session_state["train.temperature"] == 0.5
    assert at.session_state["train.steps"] == 50
    at.switch_page("pages/augmentation_lab.py").run()
    assert_clean(at)
    assert at.slider(key="lab.image").value == 7


def test_changed_setting_goes_into_the_url(make_app):
    at = make_app(page="pages/train.py")
    at.select_slider(key="train.temperature").set_value(0.5).run()
    assert at.session_state["train.temperature"] == 0.5
    url = _flush_url(at)
    assert url.get("train.temperature") == "0.5"
    assert "train.batch_size" not in url  # defaults stay out of the URL


def test_unknown_url_values_are_ignored_with_one_warning(make_app):
    at = make_app(query_params={"train.method": "byol", "train.temperature": "banana"}, page="pages/train.py")
    assert not at.exception and not at.error
    assert at.session_state["train.method"] == "simclr"
    assert at.session_state["train.temperature"] == 0.2


def test_reversed_crop_range_in_a_link_is_named_and_the_page_stays_usable(make_app):
    at = AppTest_with({"aug.crop_scale": ["0.9", "0.1"]})
    assert not at.exception
    warned = " ".join(w.value for w in at.warning)
    assert "aug.crop_scale" in warned and "not used" in warned
    at.switch_page("pages/train.py").run()
    assert_clean(at)
    assert not at.button(key="train.play").disabled  # the default crop range applies, so Play works
    assert "aug.crop_scale" not in at.query_params


def AppTest_with(params):
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import APP, TIMEOUT

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(params)
    return at.run()


def test_opened_lesson_is_in_the_url_without_touching_anything(make_app):
    """A lesson link reproduces the lesson: the preset's settings are in the address as soon as it opens."""
    at = make_app()
    at.button(key="home.preset.colour_jitter").click().run()
    assert_clean(at)
    url = dict(at.query_params)
    assert url["lesson"] == "colour_jitter"
    assert url["aug.brightness"] == "0.8" and url["aug.jitter_p"] == "1" and url["lab.image"] == "3"
    shared = make_app(query_params=url, page="pages/augmentation_lab.py")
    assert_clean(shared)
    assert shared.session_state["aug.hue"] == 0.5 and shared.session_state["lab.image"] == 3
    assert any("What colour jitter teaches" in m.value for m in shared.markdown)  # the lesson text too


def test_url_carries_values_not_labels_and_accepts_hand_typed_ones(make_app):
    at = make_app(page="pages/train.py")
    at.select_slider(key="train.steps").set_value(5000).run()
    at.selectbox(key="train.arch").set_value("resnet18").run()
    assert at.query_params["train.steps"] == "5000"  # not "5,000", as the slider shows it
    assert at.query_params["train.arch"] == "resnet18"  # not the encoder's long label
    typed = make_app(query_params={"train.steps": "5,000", "train.arch": "ResNet18", "aug.flip": "False",
                                   "aug.crop_scale": "0.4,0.9"}, page="pages/train.py")
    assert_clean(typed)
    assert typed.session_state["train.steps"] == 5000 and typed.session_state["train.arch"] == "resnet18"
    assert typed.session_state["aug.flip"] is False and tuple(typed.session_state["aug.crop_scale"]) == (0.4, 0.9)


def test_url_round_trip_for_every_setting():
    """to_url then from_url gives back each setting's default and a changed value, for every kind."""
    for key, s in S.SETTINGS.items():
        assert S.from_url(key, S.to_url(key, s.default)) == S.coerce(key, s.default), key


def test_json_export_and_import_on_the_page(make_app):
    at = make_app(page="pages/train.py")
    at.select_slider(key="train.temperature").set_value(0.07).run()
    at.toggle(key="aug.blur").set_value(True).run()
    exported = S.from_json(S.to_json({k: at.session_state[k] for k in S.keys(["train", "aug"])
                                      if k in at.session_state}, page="train"), namespaces=["train", "aug"])
    assert exported["train.temperature"] == 0.07 and exported["aug.blur"] is True

    fresh = make_app(page="pages/train.py")
    fresh.file_uploader(key="train.import").upload("lesson.json", S.to_json(exported, page="train").encode()).run()
    assert_clean(fresh)
    assert fresh.session_state["train.temperature"] == 0.07
    assert fresh.session_state["aug.blur"] is True
    assert any("Loaded" in s.value for s in fresh.success)


def test_bad_settings_file_shows_an_error(make_app):
    at = make_app(page="pages/train.py")
    at.file_uploader(key="train.import").upload("lesson.json", b'{"settings": {"train.lr": "fast"}}').run()
    assert not at.exception
    assert any("train.lr" in e.value for e in at.error)
    assert at.session_state["train.lr"] == 0.002


def test_reset_page_settings(make_app):
    at = make_app(query_params={"train.temperature": "0.5"}, page="pages/train.py")
    at.button(key="train.reset_settings").click().run()
    assert_clean(at)
    assert at.session_state["train.temperature"] == 0.2


@pytest.mark.parametrize("page, key", [("pages/train.py", "train.dataset"),
                                       ("pages/augmentation_lab.py", "lab.dataset")])
def test_augmentations_follow_the_dataset(make_app, page, key):
    """Choosing digits switches to the digits recipe (no flip: a mirrored digit is another symbol; crops of at
    least half the area); back to shapes gives the shapes recipe; the textbook SimCLR recipe is one click away."""
    from core.augment import PRESETS

    at = make_app(page=page)
    assert at.session_state["aug.hue"] == 0.5 and tuple(at.session_state["aug.crop_scale"]) == (0.3, 1.0)
    assert any("the *shapes* recipe, this dataset's default" in c.value for c in at.caption)
    at.selectbox(key=key).set_value("digits").run()
    assert_clean(at)
    digits = PRESETS["digits"]
    assert at.session_state["aug.flip"] is digits.flip is False
    assert tuple(at.session_state["aug.crop_scale"]) == digits.crop_scale == (0.5, 1.0)
    at.selectbox(key=key).set_value("shapes").run()
    where = "train" if key.startswith("train") else "lab"
    at.button_group(key=f"{where}.aug_recipe").set_value("simclr").run() if hasattr(at, "button_group") else \
        at.pills(key=f"{where}.aug_recipe").set_value("simclr").run()
    assert_clean(at)
    assert at.session_state["aug.hue"] == 0.1  # the textbook recipe: colour survives (the shortcut lesson)
    assert any("*simclr* recipe (this dataset starts from *shapes*)" in c.value for c in at.caption)


def test_the_train_page_defaults_to_auto_precision_and_passes_the_choice_on():
    from core.train import PRECISIONS, TrainConfig

    assert S.default("train.precision") == "auto"
    assert set(S.SETTINGS["train.precision"].options) == set(PRECISIONS)
    assert S.train_config(S.defaults(["train", "aug"])).precision == "auto"
    assert S.train_config({"train.precision": "bf16"}).precision == "bf16"
    assert TrainConfig().precision == "fp32"  # core's own default: the same arithmetic on every host
    with pytest.raises(ValueError):
        S.coerce("train.precision", "fp16")


def test_a_dataclass_default_that_drifts_from_the_declaration_stops_the_import():
    """What keeps TrainConfig / AugmentConfig and the page's table from drifting: core.settings_schema.declared."""
    from dataclasses import dataclass

    from core import settings_schema as SCHEMA

    @SCHEMA.declared({"batch_size": SCHEMA.TRAIN["batch_size"]})
    @dataclass(frozen=True)
    class Agrees:
        batch_size: int = 256

    with pytest.raises(RuntimeError, match="batch_size defaults to 128"):
        @SCHEMA.declared({"batch_size": SCHEMA.TRAIN["batch_size"]})
        @dataclass(frozen=True)
        class Drifted:
            batch_size: int = 128
    with pytest.raises(RuntimeError, match="no field 'batch_size'"):
        @SCHEMA.declared({"batch_size": SCHEMA.TRAIN["batch_size"]})
        @dataclass(frozen=True)
        class Missing:
            steps: int = 200
