"""segkd.outputs: the atomic writer, the disk-error translation, the manifest and the output guard."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from segkd.outputs import (MANIFEST, OutputError, atomic_path, atomic_write, guard_outputs, is_segkd_output,
                           remove_stale_temps, temp_path)

from testkit import tmpfs_run

ROOT = Path(__file__).resolve().parents[1]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".segkd-tmp-" in p.name)


def test_atomic_write_replaces_records_and_leaves_no_temp(tmp_path):
    path = tmp_path / "out" / "a.json"
    with atomic_write(path, "w") as f:
        f.write("one")
    with atomic_write(path, "w") as f:
        f.write("two")
    assert path.read_text() == "two" and is_segkd_output(path)
    assert (path.parent / MANIFEST).read_text().splitlines() == ["a.json"]
    assert leftovers(path.parent) == []


def test_a_failure_keeps_the_previous_file_and_removes_the_temp(tmp_path):
    path = tmp_path / "a.bin"
    with atomic_write(path) as f:
        f.write(b"good")
    for error in (ValueError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with atomic_write(path) as f:
                f.write(b"half")
                raise error
        assert path.read_bytes() == b"good" and leftovers(tmp_path) == []


def test_atomic_path_keeps_the_suffix_for_libraries_that_write_by_extension(tmp_path):
    path = tmp_path / "pic.png"
    with atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name.startswith(".pic.segkd-tmp-")
        assert cv2.imwrite(str(tmp), np.zeros((4, 4), np.uint8))
    assert cv2.imread(str(path)).shape == (4, 4, 3) and leftovers(tmp_path) == []


def test_a_writer_that_fails_without_an_exception_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="produced no file"):
        with atomic_path(tmp_path / "x.png"):
            pass
    assert not (tmp_path / "x.png").exists()


def test_guard_refuses_inputs_input_folders_foreign_files_and_things_in_the_way(tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    image = data / "images" / "a.jpg"
    image.write_bytes(b"x")
    with pytest.raises(OutputError, match=r"a\.jpg: is an input"):
        guard_outputs([image], inputs=[image])
    with pytest.raises(OutputError, match="lies inside the input folder"):
        guard_outputs([data / "images" / "labels" / "a.png"], inputs=[data])
    with pytest.raises(OutputError, match="not written by segkd"):
        guard_outputs([image], force=True)  # --force never replaces a user's file
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="file in the way"):
        guard_outputs([tmp_path / "file" / "out.onnx"])
    with pytest.raises(OutputError, match="folder is in the way"):
        guard_outputs([data])
    with pytest.raises(OutputError, match=r"\(and 1 more\)"):
        guard_outputs([image, data])
    guard_outputs([tmp_path / "new" / "x.onnx"], inputs=[data, None])  # nothing in the way: passes


def test_guard_replaces_segkd_outputs_only_with_force(tmp_path):
    path = tmp_path / "model.onnx"
    with atomic_write(path) as f:
        f.write(b"onnx")
    with pytest.raises(OutputError, match="pass --force to replace it"):
        guard_outputs([path])
    guard_outputs([path], force=True)


def test_stale_temps_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".last.segkd-tmp-{dead}-abcdef.pt"
    live = tmp_path / f".best.segkd-tmp-{os.getppid()}-abcdef.pt"
    for p in (stale, live):
        p.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == [stale]
    assert live.exists() and temp_path(tmp_path / "a.pt").suffix == ".pt"


WRITER = """
import sys, torch
from segkd.outputs import atomic_path, atomic_write
from segkd.errors import SegkdError
folder, how = sys.argv[1], sys.argv[2]
try:
    if how == "torch":
        with atomic_path(folder + "/big.pt") as tmp:
            torch.save({"w": torch.ones(1 << 20)}, tmp)
    elif how == "checkpoint":  # the trainer's last.pt: a small good one first, then one that does not fit
        from segkd.engine.checkpointing import atomic_save
        atomic_save({"epoch": 1}, folder + "/big.pt")
        try:
            atomic_save({"epoch": 2, "w": torch.ones(1 << 20)}, folder + "/big.pt")
        finally:
            assert torch.load(folder + "/big.pt", weights_only=True) == {"epoch": 1}  # the last good one
    else:
        with atomic_write(folder + "/big.bin") as f:
            f.write(b"0" * (1 << 20))
except SegkdError as e:
    print(e)
    sys.exit(2)
"""


@pytest.mark.parametrize("how", ["torch", "checkpoint", "file"])
def test_a_full_disk_is_one_line_naming_the_path_and_leaves_nothing(tmp_path, how):
    disk = tmp_path / "disk"
    proc = tmpfs_run(disk, [sys.executable, "-c", WRITER, str(disk), how], size="256k",
                     env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert "no space left on device" in proc.stdout and str(disk / "big") in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_read_only_folder_is_one_line_naming_the_cause(tmp_path):
    disk = tmp_path / "ro"
    proc = tmpfs_run(disk, [sys.executable, "-c", WRITER, str(disk), "file"], read_only=True,
                     env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert f"{disk / 'big.bin'}: cannot write (read-only file system)" in proc.stdout
