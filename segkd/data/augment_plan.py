"""What `segkd augment` will do, worked out (and refused) before anything is written.

`plan_augment` reads DATA's layout and split lists only (no image is opened) and returns the train pairs to
copy and augment, the other splits' files to copy byte for byte, and the split bookkeeping. Every refusal is
one `SegkdError` line (exit 2): N < 1, no split lists, an unknown split, a chosen stem that also sits in
another split, a copy name that is already a stem of DATA, and the `--out` rules of `guard_out_folder`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from segkd.data.io import CLASSES_FILE
from segkd.data.layouts import CityscapesLayout, Layout, ListLayout, Sample, get_layout, read_split_list
from segkd.errors import DataError
from segkd.outputs import OutputError, guard_outputs

MARKER = ".segkd-augment.json"  # written into every --out; --force replaces only folders that have it
EVAL_SPLITS = ("train", "val", "test")  # splits that must not share a stem with the chosen one


@dataclass(frozen=True)
class PairJob:
    """One pair of the chosen split: its sources, and paths relative to the dataset root (same in DIR)."""

    stem: str
    image: Path
    mask: Path | None
    image_rel: str
    mask_rel: str | None
    copies: tuple[tuple[str, str], ...]  # (image_rel, mask_rel) of `<stem>_aug<k>`, k = 1..N


@dataclass
class AugmentPlan:
    root: Path
    out: Path
    layout: Layout
    split: str
    times: int
    jobs: list[PairJob]
    verbatim: list[tuple[Path, str]] = field(default_factory=list)  # (source, relative path): copied byte for byte
    split_stems: dict[str, list[str]] = field(default_factory=dict)  # split -> stems before

    @property
    def list_layout(self) -> bool:
        return isinstance(self.layout, ListLayout)


def copy_stem(stem: str, k: int) -> str:
    return f"{stem}_aug{k}"


def plan_augment(data: Path | str, out: Path | str, split: str = "train", times: int = 1,
                 force: bool = False) -> AugmentPlan:
    """The jobs and copies of one `segkd augment` run; raises one-line SegkdErrors before anything is written."""
    root, out = Path(data), Path(out)
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise DataError(f"--times {times}: give N >= 1 augmented copies per image")
    layout = get_layout(root)
    guard_out_folder(out, root, force)
    if isinstance(layout, ListLayout):
        return _plan_lists(root, out, layout, split, times)
    return _plan_folders(root, out, layout, split, times)


def guard_out_folder(out: Path, data: Path, force: bool) -> None:
    """--out must lie outside DATA (and not hold it), and be new, empty, or an earlier `segkd augment` output
    with --force. The marker file goes through the one output guard (segkd's own outputs, --force)."""
    o, d = out.resolve(), data.resolve()
    if o == d or d in o.parents:
        raise OutputError(f"{out}: --out is DATA or lies inside it; choose a folder outside {data}")
    if o in d.parents:
        raise OutputError(f"{out}: DATA lies inside --out; choose a folder outside {data}")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise OutputError(f"{out}: exists, is not empty and was not written by segkd augment; choose another --out")
    guard_outputs([out / MARKER], inputs=[data], force=force, force_hint="--force")


def _plan_lists(root: Path, out: Path, layout: ListLayout, split: str, times: int) -> AugmentPlan:
    lists = layout.list_dir(root)
    files = sorted(lists.glob("*.txt")) if lists.is_dir() else []
    if not files:
        raise DataError(f"{root} has no split lists: run `segkd split {root}` first")
    if not (lists / f"{split}.txt").is_file():
        raise DataError(f"{lists / f'{split}.txt'}: split list not found (lists here: "
                        f"{', '.join(p.stem for p in files)})")
    split_stems = {p.stem: read_split_list(p) for p in sorted(files, key=lambda p: _split_order(p.stem))}
    scan = layout.scan(root)
    chosen = layout.samples(root, split)
    _refuse_leaks(lists, split, split_stems)
    jobs = [_job(root, s, times, lambda st, k: root / layout.mask_dir / f"{copy_stem(st, k)}.png")
            for s in chosen]
    _refuse_collisions(root, jobs, set(scan.images))
    verbatim, seen = [], {s.stem for s in chosen}
    for name in split_stems:
        for sample in layout.samples(root, name):  # DataError names a list whose stem has no image
            if sample.stem not in seen:
                seen.add(sample.stem)
                verbatim += [(p, p.relative_to(root).as_posix()) for p in (sample.image, sample.mask) if p]
    verbatim += _classes_file(root)
    return AugmentPlan(root, out, layout, split, times, jobs, verbatim, split_stems)


def _plan_folders(root: Path, out: Path, layout: Layout, split: str, times: int) -> AugmentPlan:
    """Cityscapes: splits are folders; copies go beside their source in the same city folder."""
    splits = layout.splits(root)
    if split not in splits:
        raise DataError(f"{root / 'leftImg8bit' / split}: split folder not found (splits here: {', '.join(splits)})")
    samples = {s: layout.samples(root, s) for s in splits}
    suffix = layout.mask_suffixes[0] if isinstance(layout, CityscapesLayout) else ".png"
    jobs = [_job(root, s, times, lambda st, k, s=s: _gt_folder(root, s) / f"{copy_stem(st, k)}{suffix}")
            for s in samples[split]]
    _refuse_collisions(root, jobs, {s.stem for ss in samples.values() for s in ss})
    verbatim = [(p, p.relative_to(root).as_posix()) for name, ss in samples.items() if name != split
                for s in ss for p in (s.image, s.mask) if p]
    verbatim += _classes_file(root)
    split_stems = {name: [s.stem for s in samples[name]] for name in sorted(samples, key=_split_order)}
    return AugmentPlan(root, out, layout, split, times, jobs, verbatim, split_stems)


def _split_order(name: str) -> tuple[int, str]:
    """train, val, test, trainval, then any other split by name."""
    known = ("train", "val", "test", "trainval")
    return (known.index(name) if name in known else len(known), name)


def _gt_folder(root: Path, sample: Sample) -> Path:
    city, split = sample.image.parent.name, sample.image.parent.parent.name
    return root / "gtFine" / split / city


def _job(root: Path, s: Sample, times: int, mask_of_copy) -> PairJob:
    """`mask_of_copy(stem, k)` -> the absolute mask path of copy k (always a class-index PNG)."""
    tail = s.image.name[len(s.stem):] if s.image.name.startswith(s.stem) else s.image.suffix
    copies = tuple(((s.image.parent / f"{copy_stem(s.stem, k)}{tail}").relative_to(root).as_posix(),
                    mask_of_copy(s.stem, k).relative_to(root).as_posix()) for k in range(1, times + 1))
    rel = (lambda p: p.relative_to(root).as_posix() if p else None)
    return PairJob(s.stem, s.image, s.mask, rel(s.image), rel(s.mask), copies)


def _refuse_leaks(lists: Path, split: str, split_stems: dict[str, list[str]]) -> None:
    chosen = set(split_stems[split])
    for other in EVAL_SPLITS:
        if other == split or other not in split_stems:
            continue
        shared = sorted(chosen & set(split_stems[other]))
        if shared:
            raise DataError(f"{lists}: {len(shared)} stem(s) are in both {split}.txt and {other}.txt "
                            f"(first: {shared[0]}); augmenting them would leak copies into {other}: "
                            "fix the lists (segkd split --force)")


def _refuse_collisions(root: Path, jobs: list[PairJob], stems: set[str]) -> None:
    for job in jobs:
        for k in range(1, len(job.copies) + 1):
            if copy_stem(job.stem, k) in stems:
                raise DataError(f"{root}: the copy name '{copy_stem(job.stem, k)}' is already a stem of DATA; "
                                "rename it or augment another split")


def _classes_file(root: Path) -> list[tuple[Path, str]]:
    path = root / CLASSES_FILE
    return [(path, CLASSES_FILE)] if path.is_file() else []
