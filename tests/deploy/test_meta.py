"""DeployMeta: from a config, to/from ONNX metadata_props."""

import json

from segkd.data.palette import default_palette
from segkd.deploy.meta import DeployMeta

from .conftest import CLASSES, PALETTE, tiny_config


def test_from_config_takes_classes_palette_and_geometry():
    meta = DeployMeta.from_config(tiny_config(size=32))
    assert meta.arch == "deploy_tiny" and meta.num_classes == 3
    assert meta.classes == CLASSES and meta.palette == PALETTE
    assert meta.input_size == [32, 32] and meta.resize == "letterbox" and meta.mean == [0.0, 0.0, 0.0]
    pre = meta.preprocess()
    assert pre.size == (32, 32) and pre.mode == "letterbox" and pre.pad_value == 128


def test_missing_names_and_colours_are_filled():
    cfg = tiny_config()
    cfg["data"].update(classes=["bg"], palette=None)
    meta = DeployMeta.from_config(cfg)
    assert meta.classes == ["bg", "class1", "class2"]
    assert meta.palette == default_palette(3)


def test_props_round_trip_as_json():
    meta = DeployMeta.from_config(tiny_config()).replace(output="labels", dynamic=["batch"], precision="int8")
    props = meta.to_props()
    assert json.loads(props["classes"]) == CLASSES and json.loads(props["input_size"]) == [32, 32]
    assert DeployMeta.from_props(props) == meta
    assert DeployMeta.from_props({"producer": "x"}) is None
