"""The export job: fp32 + fp16 + int8 artifacts, each verified; a broken one is renamed `.unverified`."""

import pytest

import segkd.deploy.artifacts as artifacts
from segkd.deploy.artifacts import ExportRequest, export_artifacts
from segkd.deploy.export import export_onnx, read_meta
from segkd.deploy.loading import load_model
from segkd.errors import DataError

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


def test_int8_needs_calibration_data(tiny_ckpt, tmp_path):
    with pytest.raises(DataError, match="--calib"):
        export_artifacts(load_model(tiny_ckpt), ExportRequest(tmp_path / "m.onnx", int8=True))


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
