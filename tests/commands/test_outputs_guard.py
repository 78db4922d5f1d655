"""Every command that writes goes through the one output guard and the one atomic writer (predict, export, train,
eval): inputs are never overwritten, foreign files never replaced, disk errors are one line with exit 2."""

import hashlib
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from typer.testing import CliRunner

from segkd.cli import app

from testkit import flat, load_test_module, tmpfs_run

fx = load_test_module("deploy_fixtures", "deploy/conftest.py")  # registers `deploy_tiny`
efx = load_test_module("engine_fixtures", "engine/conftest.py")  # registers `tiny_seg`

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        digest.update(str(p.relative_to(root)).encode() + (p.read_bytes() if p.is_file() else b""))
    return digest.hexdigest()


def setup(tmp_path):
    ckpt = fx.save_checkpoint(tmp_path / "tiny.pt")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        fx.write_image(images / f"img{i}.png", 40, 56, seed=i)
    return ckpt, images


def predict(*args):
    return runner.invoke(app, ["predict", *map(str, args), "--device", "cpu"])


def test_predict_refuses_an_out_folder_whose_subfolder_is_a_source(tmp_path):
    ckpt, _ = setup(tmp_path)
    out = tmp_path / "out"
    (out / "labels").mkdir(parents=True)
    fx.write_image(out / "labels" / "photo.png", 40, 56)  # the user's images in what would be an output folder
    before = tree_hash(out)
    result = predict(out / "labels", "--weights", ckpt, "--out", out)
    assert result.exit_code == 2 and "lies inside the input folder" in flat(result), result.output
    assert tree_hash(out) == before and "Traceback" not in result.output


def test_predict_replaces_its_own_outputs_only_with_force_and_never_a_users_file(tmp_path):
    ckpt, images = setup(tmp_path)
    out = tmp_path / "out"
    assert predict(images, "--weights", ckpt, "--out", out).exit_code == 0
    again = predict(images, "--weights", ckpt, "--out", out)
    assert again.exit_code == 2 and "(a segkd output); pass --force to replace it" in flat(again)
    assert predict(images, "--weights", ckpt, "--out", out, "--force").exit_code == 0
    (out / "overlay" / "img1.jpg").write_bytes(b"the user's own picture")  # replaced by hand: now the user's? no:
    (out / "overlay" / "img9.jpg").write_bytes(b"the user's own picture")  # a file segkd never wrote
    fx.write_image(images / "img9.png", 40, 56)
    refused = predict(images, "--weights", ckpt, "--out", out, "--force")
    assert refused.exit_code == 2 and "img9.jpg: exists and was not written by segkd" in flat(refused)
    assert (out / "overlay" / "img9.jpg").read_bytes() == b"the user's own picture"


def test_export_never_overwrites_a_dataset_image_or_the_weights(tmp_path):
    ckpt, images = setup(tmp_path)
    target = images / "img0.png"
    before = target.read_bytes()
    result = runner.invoke(app, ["export", "-w", str(ckpt), "--out", str(target), "--no-simplify"])
    assert result.exit_code == 2 and "img0.png: exists and was not written by segkd" in flat(result)
    assert target.read_bytes() == before and "success" not in result.output
    result = runner.invoke(app, ["export", "-w", str(ckpt), "--out", str(ckpt)])
    assert result.exit_code == 2 and "tiny.pt: is an input of this command" in flat(result)


def test_export_twice_needs_force(tmp_path):
    ckpt, _ = setup(tmp_path)
    out = tmp_path / "onnx" / "m.onnx"
    args = ["export", "-w", str(ckpt), "--out", str(out), "--no-simplify"]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "pass --force" in flat(again)
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


def test_train_refuses_a_run_folder_inside_the_data(tmp_path):
    root = efx.make_voc_tree(tmp_path / "voc")
    before = tree_hash(root)
    result = runner.invoke(app, ["train", "--preset", str(efx.write_preset(tmp_path / "tiny.yaml")), "--data",
                                 str(root), f"project={root / 'runs'}"])
    assert result.exit_code == 2 and "lies inside the input folder" in flat(result), result.output
    assert tree_hash(root) == before


def test_an_output_path_through_a_file_is_one_line_exit_2(tmp_path):
    ckpt, images = setup(tmp_path)
    (tmp_path / "file").write_text("x")
    result = predict(images, "--weights", ckpt, "--out", tmp_path / "file" / "out")
    assert result.exit_code == 2 and "file is a file in the way of a folder" in flat(result)


CLI = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("deploy_fixtures", {conftest!r})
sys.modules[spec.name] = module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from segkd.cli import app
app(sys.argv[1:], prog_name="segkd")
"""


def run_cli_on_tmpfs(tmp_path, disk, args, **kw):
    script = tmp_path / "cli.py"
    script.write_text(CLI.format(conftest=str(ROOT / "tests" / "deploy" / "conftest.py")))
    return tmpfs_run(disk, [sys.executable, str(script), *map(str, args)], env={"PYTHONPATH": str(ROOT)}, **kw)


def test_a_full_disk_during_predict_is_one_line_and_leaves_no_half_written_png(tmp_path):
    ckpt, images = setup(tmp_path)
    for i in range(2, 40):
        fx.write_image(images / f"img{i}.png", 120, 160, seed=i)
    disk = tmp_path / "disk"
    proc = run_cli_on_tmpfs(tmp_path, disk, ["predict", images, "--weights", ckpt, "--out", disk / "out",
                                             "--device", "cpu", "--mix", "mask"], size="48k")
    assert proc.returncode == 2, proc.stderr
    assert "no space left on device" in proc.stderr and str(disk / "out") in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_read_only_folder_during_export_is_one_line_exit_2(tmp_path):
    ckpt, _ = setup(tmp_path)
    disk = tmp_path / "ro"
    proc = run_cli_on_tmpfs(tmp_path, disk, ["export", "-w", ckpt, "--out", disk / "m.onnx", "--no-simplify"],
                            read_only=True)
    assert proc.returncode == 2, proc.stderr
    assert f"{disk}" in proc.stderr and "read-only file system" in proc.stderr and "Traceback" not in proc.stderr


# -- ONNX files segkd did not export ------------------------------------------------------------------------
def foreign_onnx(path: Path, kind: str) -> Path:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 1, 1], np.eye(4, 3, dtype=np.float32).ravel().tolist())
    if kind == "segmenter":
        nodes = [helper.make_node("Conv", ["input", "w"], ["scores"])]
        outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4, 32, 32])]
    else:  # a classifier: B×4
        nodes = [helper.make_node("Conv", ["input", "w"], ["c"]), helper.make_node("GlobalAveragePool", ["c"], ["p"]),
                 helper.make_node("Flatten", ["p"], ["scores"])]
        outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outputs, [w]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "arch", "someone-elses"  # a key segkd also uses, and nothing else
    onnx.save(model, str(path))
    return path


def test_a_foreign_segmenter_runs_with_a_warning_or_the_given_normalisation(tmp_path):
    _, images = setup(tmp_path)
    model = foreign_onnx(tmp_path / "seg.onnx", "segmenter")
    result = predict(images, "--weights", model, "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    assert "has no segkd metadata: ImageNet mean/std assumed" in flat(result)
    assert (tmp_path / "a" / "labels" / "img0.png").is_file()
    result = predict(images, "--weights", model, "--out", tmp_path / "b", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5")
    assert result.exit_code == 0 and "ImageNet" not in result.output


def test_a_foreign_classifier_is_refused_in_one_line(tmp_path):
    _, images = setup(tmp_path)
    model = foreign_onnx(tmp_path / "cls.onnx", "classifier")
    result = predict(images, "--weights", model, "--out", tmp_path / "a")
    assert result.exit_code == 2 and "cls.onnx: no segkd metadata and its output 'scores' is [1, 4]" in flat(result)
    assert "Traceback" not in result.output and not (tmp_path / "a").exists()
