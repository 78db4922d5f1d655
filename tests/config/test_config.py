"""Presets, overrides and their errors."""

import pytest

from segkd.config import load_config, parse_overrides, preset_names, valid_keys
from segkd.errors import ConfigError

REQUIRED_KEYS = [
    "name", "exist_ok", "data.root", "data.input_size", "model.num_classes", "model.weights", "train.epochs",
    "train.batch_size", "train.lr", "train.seed", "train.amp",
]


def test_required_keys_exist_in_schema():
    keys = set(valid_keys())
    assert set(REQUIRED_KEYS) <= keys
    assert "distill.teacher.weights" in keys


def test_overrides_are_typed():
    cfg = load_config("fastsegformer-p", ["train.epochs=10", "data.root=data/x", "model.num_classes=6",
                                          "train.lr=1e-3", "train.amp=true", "data.input_size=[256,320]",
                                          "model.weights=none"])
    assert cfg.train.epochs == 10
    assert cfg.data.root == "data/x"
    assert cfg.model.num_classes == 6
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.train.amp is True
    assert cfg.data.input_size == [256, 320]
    assert cfg.model.weights is None
    assert cfg.name == "fastsegformer-p"


def test_unknown_key_names_nearest():
    with pytest.raises(ConfigError, match=r"unknown key 'train.epoch', did you mean 'train.epochs'\?"):
        load_config("fastsegformer-p", ["train.epoch=3"])


def test_wrong_type_names_key_and_type():
    with pytest.raises(ConfigError, match=r"train.lr='fast' is not a number"):
        load_config("fastsegformer-p", ["train.lr=fast"])
    with pytest.raises(ConfigError, match=r"train.epochs=2.5 is not an integer"):
        load_config("fastsegformer-p", ["train.epochs=2.5"])
    with pytest.raises(ConfigError, match=r"train.optimizer='adamx' is not one of"):
        load_config("fastsegformer-p", ["train.optimizer=adamx"])


def test_malformed_override():
    with pytest.raises(ConfigError, match="is not a key=value override"):
        parse_overrides(["train.epochs"])


def test_unknown_preset_suggests():
    with pytest.raises(ConfigError, match="unknown preset 'fastsegformer-q', did you mean 'fastsegformer-p'"):
        load_config("fastsegformer-q")


def test_preset_file_with_base(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: fastsegformer-p\ntrain:\n  epochs: 7\ndata:\n  root: somewhere\n")
    cfg = load_config(str(path))
    assert cfg.train.epochs == 7
    assert cfg.train.batch_size == 32  # inherited
    assert cfg.data.classes[1] == "sunburn"
    assert cfg.preset == "mine"


def test_preset_file_unknown_key_names_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("base: fastsegformer-p\ntrain:\n  epoks: 7\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'train.epoks', did you mean 'train.epochs'"):
        load_config(str(path))


def test_base_loop_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text(f"base: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"base: {tmp_path / 'a.yaml'}\n")
    with pytest.raises(ConfigError, match="chain loops"):
        load_config(str(tmp_path / "a.yaml"))


@pytest.mark.parametrize("name", preset_names())
def test_every_shipped_preset_validates(name):
    cfg = load_config(name)
    assert cfg.model.arch
    assert cfg.model.num_classes >= 1


@pytest.mark.parametrize("override, message", [
    ("train.epochs=0", r"train.epochs=0 must be >= 1"),
    ("train.lr=0", r"train.lr=0.0 must be > 0"),
    ("data.input_size=[0,3]", r"data.input_size=\[0, 3\] must be a positive side"),
    ("model.num_classes=0", r"model.num_classes=0 must be >= 1"),
])
def test_out_of_range_values(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("fastsegformer-p", [override])


def test_a_relative_base_file_is_found_beside_the_preset_not_in_the_working_directory(tmp_path, monkeypatch):
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "parent.yaml").write_text("base: fastsegformer-p\ntrain:\n  epochs: 3\n")
    (folder / "child.yaml").write_text("base: parent.yaml\ntrain:\n  lr: 0.5\n")
    monkeypatch.chdir(tmp_path)  # parent.yaml is not in the working directory
    cfg = load_config(str(folder / "child.yaml"))
    assert (cfg.train.epochs, cfg.train.lr) == (3, 0.5)


@pytest.mark.parametrize("override, message", [("train.seed=-1", "train.seed=-1 must be >= 0"),
                                               ("train.nan_patience=0", "train.nan_patience=0 must be >= 1")])
def test_seed_and_nan_patience_ranges(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("fastsegformer-p", [override])
