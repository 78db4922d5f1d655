"""Every file segkd writes: one output guard, one atomic writer, one translation of disk errors.

```python
guard_outputs([out / "model.onnx"], inputs=[weights, data_root], force=force)   # before any work
with atomic_path(out / "model.onnx") as tmp:        # libraries that write by path (torch, onnx, cv2, PIL)
    onnx.save(proto, str(tmp))
with atomic_write(out / "metrics.json", "w") as f:  # anything that writes to a file object
    f.write(text)
```

- **Atomic.** A file is written under a temporary name in its own folder (`.<stem>.segkd-tmp-<pid>-<hex><suffix>`,
  the suffix kept so libraries still pick the format by extension), flushed, fsynced and `os.replace`d onto its
  final name. On any failure (an exception, Ctrl-C) the temporary file is removed, so no file ever sits under its
  final name half-written, and the previous file of that name is untouched. A process killed with SIGKILL can
  leave a temporary file behind: `remove_stale_temps(folder)` deletes those of processes that no longer run.
- **Disk errors** (no space, read-only file system, no permission, a file in the way of a folder) become one
  `OutputError` (exit 2) naming the path and the cause, also when a library hides the OSError (torch.save's
  "unexpected pos" on a full disk, cv2.imwrite returning False).
- **segkd's own outputs.** Each folder segkd writes into gets a manifest `.segkd-outputs`: one file name per line,
  appended when a file is renamed into place. A file is segkd's own when its name is in its folder's manifest.
- **The guard** (`guard_outputs`) runs before any work and refuses, in one line: an output that is an input file,
  an output inside an input folder the command reads, an existing folder or non-folder in the way, and an
  existing file segkd did not write. An existing segkd output is replaced only with `force` (`--force`,
  `exist_ok=true`); `backed_up=True` is for a caller that copies existing files aside before replacing them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from pathlib import Path
from typing import IO, Iterable, Iterator

from segkd.errors import SegkdError

MANIFEST = ".segkd-outputs"
TEMP_MARK = ".segkd-tmp-"
LOW_SPACE = 1 << 20  # bytes: below this, a library's unexplained write failure is reported as a full disk

CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied (read-only folder?)",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a file is in the way of a folder",
    errno.EISDIR: "a folder is in the way",
    errno.EEXIST: "a file is in the way of a folder",
    errno.ENAMETOOLONG: "name too long",
}


class OutputError(SegkdError):
    """An output cannot be written (guard refusal or disk error): bad usage or environment, exit 2."""


# -- disk errors ------------------------------------------------------------------------------------------
def disk_error(path: str | Path, e: BaseException) -> OutputError:
    """`path: cannot write (cause)` for an OSError or a library's write failure."""
    cause = None
    if isinstance(e, OSError) and e.errno in CAUSES:
        cause = CAUSES[e.errno]
    elif _free_bytes(Path(path).parent) < LOW_SPACE or "No space left" in str(e):
        cause = CAUSES[errno.ENOSPC]
    elif isinstance(e, OSError) and e.strerror:
        cause = e.strerror.lower()
    else:
        cause = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else 'write failed'}"[:160]
    return OutputError(f"{path}: cannot write ({cause})")


def _free_bytes(folder: Path) -> int:
    try:
        st = os.statvfs(folder)
    except OSError:
        return 1 << 62
    return st.f_bavail * st.f_frsize


def make_dirs(folder: str | Path) -> Path:
    """`mkdir -p` whose failures (a file in the way, read-only, ...) are one OutputError naming the folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{folder}: cannot create the folder ({_blocker(folder)} is a file in the way)") from None
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            raise OutputError(f"{folder}: cannot create the folder ({_blocker(folder)} is a file in the way)") from None
        raise disk_error(folder, e) from None
    return folder


def _blocker(path: Path) -> Path:
    """The first existing non-folder on the way to `path` (or `path` itself)."""
    for p in [*reversed(path.parents), path]:
        if p.exists() and not p.is_dir():
            return p
    return path


# -- atomic writes ----------------------------------------------------------------------------------------
def temp_path(path: str | Path) -> Path:
    """A fresh temporary name beside `path`, with its suffix kept."""
    path = Path(path)
    return path.with_name(f".{path.stem}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(3)}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | Path, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed onto `path`, on failure removed.

    `durable=False` skips the fsync (many small files whose loss on power failure costs nothing, e.g. pictures).
    """
    path = Path(path)
    make_dirs(path.parent)
    tmp = temp_path(path)
    try:
        yield tmp
        if not tmp.is_file():
            raise OutputError(f"{path}: the writer produced no file")
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except SegkdError:
        raise
    except Exception as e:  # noqa: BLE001  (disk full, read-only, a library's write failure: name the path)
        if not _is_write_failure(e, path, tmp):
            raise
        raise disk_error(path, e) from None
    finally:
        with contextlib.suppress(OSError):  # a read-only folder refuses the unlink too
            tmp.unlink(missing_ok=True)
    record_output(path)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", durable: bool = True, **open_kwargs) -> Iterator[IO]:
    """Yield a file object on a temporary file beside `path`; flushed, fsynced and renamed onto `path` on success."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_write mode {mode!r}: only write modes ('w', 'wb')")
    with atomic_path(path, durable=False) as tmp:
        try:
            f = open(tmp, mode, **open_kwargs)
        except OSError as e:
            raise disk_error(path, e) from None
        with f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_write_failure(e: Exception, path: Path, tmp: Path) -> bool:
    """An OSError about the output (not about a file the writer was reading), or a library's exception while
    the disk is (nearly) full."""
    if isinstance(e, OSError):
        return not e.filename or Path(e.filename).parent in (path.parent, tmp.parent)
    return _free_bytes(path.parent) < LOW_SPACE or "unexpected pos" in str(e) or "No space left" in str(e)


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files that killed segkd processes left in `folder` (not those of live processes)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.iterdir():
        if p.name.startswith(".") and TEMP_MARK in p.name and p.is_file() and not _pid_alive(_temp_pid(p.name)):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _temp_pid(name: str) -> int:
    try:
        return int(name.split(TEMP_MARK, 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return -1


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process does not hold a temp file between writes
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- segkd's own outputs ----------------------------------------------------------------------------------
_manifests: dict[Path, set[str]] = {}


def _manifest(folder: Path) -> set[str]:
    folder = folder.resolve()
    if folder not in _manifests:
        try:
            names = (folder / MANIFEST).read_text(encoding="utf-8").splitlines()
        except OSError:
            names = []
        _manifests[folder] = {n for n in names if n}
    return _manifests[folder]


def record_output(path: str | Path) -> None:
    """Add `path` to its folder's manifest (an append; the manifest is best-effort bookkeeping)."""
    path = Path(path)
    names = _manifest(path.parent)
    if path.name in names:
        return
    try:
        with open(path.parent / MANIFEST, "a", encoding="utf-8") as f:
            f.write(path.name + "\n")
    except OSError as e:
        raise disk_error(path.parent / MANIFEST, e) from None
    names.add(path.name)


def is_segkd_output(path: str | Path) -> bool:
    """True when `path` is listed in its folder's manifest (segkd wrote it)."""
    path = Path(path)
    return path.name in _manifest(path.parent)


# -- the guard --------------------------------------------------------------------------------------------
def guard_outputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path | None] = (), *, force: bool = False,
                  force_hint: str = "--force", backed_up: bool = False) -> None:
    """Refuse (one OutputError line, before any work) outputs that would touch the inputs or a file segkd did not
    write; see the module docstring. `inputs` are files and folders the command reads (None entries skipped)."""
    ins = [Path(p).resolve() for p in inputs if p is not None and str(p) != ""]
    problems = []
    for out in outputs:
        problem = _problem(Path(out), ins, force, force_hint, backed_up)
        if problem:
            problems.append(problem)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise OutputError(problems[0] + more)


def _problem(out: Path, ins: list[Path], force: bool, force_hint: str, backed_up: bool) -> str:
    resolved = out.resolve()
    for src in ins:
        if resolved == src:
            return f"{out}: is an input of this command; choose another output"
        if src.is_dir() and src in resolved.parents:
            return f"{out}: lies inside the input folder {src}; choose an output outside it"
    blocker = _blocker(out.parent)
    if blocker.exists() and not blocker.is_dir():
        return f"{out}: cannot write ({blocker} is a file in the way of a folder)"
    if out.is_dir():
        return f"{out}: cannot write (a folder is in the way)"
    folder = next(p for p in [out.parent, *out.parent.parents] if p.exists())
    if not os.access(folder, os.W_OK):
        return f"{out}: cannot write ({folder}: {_unwritable_cause(folder)})"
    if out.exists():
        if not is_segkd_output(out) and not (backed_up and force):
            return f"{out}: exists and was not written by segkd; refusing to overwrite it (choose another output)"
        if not force:
            return f"{out}: exists (a segkd output); pass {force_hint} to replace it"
    return ""


def _unwritable_cause(folder: Path) -> str:
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return CAUSES[errno.EROFS] if read_only else CAUSES[errno.EACCES]


def copy_aside(path: Path) -> Path:
    """Copy `path` to the first free `<name>.bak`, `<name>.bak1`, ... and return the copy."""
    candidate, i = path.with_name(path.name + ".bak"), 1
    while candidate.exists():
        candidate, i = path.with_name(f"{path.name}.bak{i}"), i + 1
    shutil.copy2(path, candidate)
    return candidate
