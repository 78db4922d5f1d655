"""The export job: fp32 + fp16 + int8 artifacts, each verified; a broken one is renamed `.unverified`."""

import pytest

import segkd.deploy.artifacts as artifacts
from segkd.deploy.artifacts import ExportRequest, export_artifacts, pick_int8
from segkd.deploy.export import export_onnx, read_meta
from segkd.deploy.loading import load_model
from segkd.errors import ConfigError, DataError

from .test_verify import perturb_weights


def test_fp32_fp16_int8_all_verified(tiny_ckpt, tiny_data, tmp_path):
    loaded = load_model(tiny_ckpt)
    req = ExportRequest(tmp_path / "out" / "tiny.onnx", dynamic=True, fp16=True, int8=True, calib=tiny_data)
    report = export_artifacts(loaded, req)
    assert [a.format for a in report.artifacts] == ["ONNX fp32", "ONNX fp16", "ONNX int8"]
    assert all(a.ok for a in report.artifacts) and not report.failures
    names = [a.path.name for a in report.artifacts]
    assert names == ["tiny.onnx", "tiny.fp16.onnx", "tiny.int8.onnx"]
    assert [read_meta(a.path).precision for a in report.artifacts] == ["fp32", "fp16", "int8"]
    assert report.artifacts[0].parity.cases[0].name == "real image 1"  # a dataset image, not only noise
    r = report.int8
    assert r.val_images == 3 and r.calib_images == 3
    assert 0.0 <= r.miou_int8 <= 1.0 and 0.0 <= r.miou_fp32 <= 1.0 and r.ms_int8 > 0 and r.ms_fp32 > 0
    # auto: both op sets built, scored, one kept; the other was a scratch file and is gone
    assert set(r.tried) == {"conv", "all"} and r.op_set == pick_int8(r.miou_fp32, r.tried)
    assert (r.miou_int8, r.ms_int8) == r.tried[r.op_set]
    note = report.artifacts[2].notes[-1]
    assert note.startswith("op set (auto): conv ") and note.endswith(f"→ kept {r.op_set}")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".segkd-outputs", "tiny.fp16.onnx", "tiny.int8.onnx",
                                                                    "tiny.onnx"]
    assert set((tmp_path / "out" / ".segkd-outputs").read_text().split()) == set(names)  # segkd wrote all three


def test_int8_op_set_can_be_forced(tiny_ckpt, tiny_data, tmp_path):
    req = ExportRequest(tmp_path / "tiny.onnx", int8=True, calib=tiny_data, int8_ops="all")
    report = export_artifacts(load_model(tiny_ckpt), req)
    assert report.int8.op_set == "all" and list(report.int8.tried) == ["all"]
    assert "every supported op" in report.artifacts[1].notes[0]
    with pytest.raises(ConfigError, match="int8 op set 'fast': expected auto, conv, all"):
        export_artifacts(load_model(tiny_ckpt), ExportRequest(tmp_path / "x.onnx", int8=True, calib=tiny_data,
                                                              int8_ops="fast"))


def test_pick_int8_keeps_the_fastest_accurate_op_set():
    tried = {"conv": (0.5030, 15.0), "all": (0.5010, 20.0)}
    assert pick_int8(0.5035, tried) == "conv"  # faster and close
    assert pick_int8(0.5035, {"conv": (0.5030, 15.0), "all": (0.5020, 9.0)}) == "all"  # -0.15 points, faster
    assert pick_int8(0.5035, {"conv": (0.5030, 15.0), "all": (0.4900, 9.0)}) == "conv"  # all loses 1.35 points
    assert pick_int8(0.60, {"conv": (0.50, 15.0), "all": (0.52, 9.0)}) == "all"  # none close: most accurate


def test_int8_needs_calibration_data(tiny_ckpt, tmp_path):
    with pytest.raises(DataError, match="--calib"):
        export_artifacts(load_model(tiny_ckpt), ExportRequest(tmp_path / "m.onnx", int8=True))
    with pytest.raises(DataError, match="nowhere: dataset folder not found"):
        export_artifacts(load_model(tiny_ckpt), ExportRequest(tmp_path / "out" / "m.onnx", int8=True,
                                                              calib=tmp_path / "nowhere"))
    assert not (tmp_path / "out").exists()  # refused before the fp32 export was written


def test_broken_export_is_caught_and_kept_unverified(tiny_ckpt, tmp_path, monkeypatch):
    def broken_export(*args, **kwargs):
        result = export_onnx(*args, **kwargs)
        perturb_weights(result.path)
        return result

    monkeypatch.setattr(artifacts, "export_onnx", broken_export)
    report = export_artifacts(load_model(tiny_ckpt), ExportRequest(tmp_path / "m.onnx", fp16=True))
    assert len(report.artifacts) == 1 and not report.artifacts[0].ok  # fp16 is not built from a broken graph
    assert report.artifacts[0].path == tmp_path / "m.onnx.unverified"
    assert (tmp_path / "m.onnx.unverified").is_file() and not (tmp_path / "m.onnx").exists()
    assert "ONNX fp32" in report.failures[0] and "max |Δlogit|" in report.failures[0]
