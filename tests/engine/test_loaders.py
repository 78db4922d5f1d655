"""Train loader: seeded order, per-sample RNG, identical batches with or without workers, DDP-style shards."""

import pytest
import torch

from segkd.config import DataConfig, load_config
from segkd.data.augment import build_train_transform
from segkd.data.transforms import Preprocess
from segkd.engine.loaders import (AugmentedSamples, EpochSampler, adopt_dataset_classes, build_train_loader,
                                  open_split, resolve_classes, worker_errors)
from segkd.errors import ConfigError, DataError

from .conftest import CLASSES, make_voc_tree

AUGMENT = [{"op": "random_resized_paste", "scale": [0.5, 1.5]}, {"op": "hflip", "p": 0.5}]


def samples(voc_root, seed=0):
    data = DataConfig(root=str(voc_root), input_size=32, mean=[0.5] * 3, std=[0.5] * 3)
    ds = open_split(data, "train", 3)
    return AugmentedSamples(ds, build_train_transform(AUGMENT, data, (32, 32)),
                            Preprocess.from_config(data).normalize, seed)


def batches(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in loader]


def test_sampler_is_seeded_per_epoch_and_yields_the_epoch():
    s = EpochSampler(10, seed=3)
    s.set_epoch(2)
    first = list(s)
    assert all(e == 2 for e, _ in first) and sorted(i for _, i in first) == list(range(10))
    assert list(s) == first
    s.set_epoch(3)
    assert [i for _, i in s] != [i for _, i in first]


def test_sampler_shards_like_distributed_sampler():
    shards = [list(EpochSampler(10, seed=0, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # padded to an equal share
    assert {i for s in shards for _, i in s} == set(range(10))
    dropped = [list(EpochSampler(10, seed=0, rank=r, world_size=3, drop_last=True)) for r in range(3)]
    assert [len(s) for s in dropped] == [3, 3, 3]


def test_samples_are_tensors_at_input_size_and_depend_only_on_seed_epoch_index(voc_root):
    ds = samples(voc_root)
    x, y = ds[(0, 1)]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (32, 32) and y.dtype == torch.int64 and set(y.unique().tolist()) <= {0, 1, 2}
    assert torch.equal(ds[(0, 1)][0], x)  # same (epoch, index) -> same augmentation
    differs = [not torch.equal(ds[(e, 1)][0], x) for e in range(1, 6)]
    assert any(differs)  # other epochs draw other augmentations
    assert not torch.equal(samples(voc_root, seed=1)[(0, 1)][0], x)


def test_workers_do_not_change_the_batches(voc_root):
    ds = samples(voc_root)
    plain = build_train_loader(ds, batch_size=3, workers=0, seed=0)
    parallel = build_train_loader(ds, batch_size=3, workers=2, seed=0)
    assert parallel.persistent_workers and not plain.persistent_workers
    assert plain.drop_last and len(plain) == 8 // 3
    for epoch in (0, 1):  # persistent workers still see the new epoch
        for (xa, ya), (xb, yb) in zip(batches(plain, epoch), batches(parallel, epoch)):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(batches(plain, 0)[0][0], batches(plain, 1)[0][0])


def test_single_batch_split_keeps_its_partial_batch(voc_root):
    loader = build_train_loader(samples(voc_root), batch_size=16, workers=0, seed=0)
    assert not loader.drop_last and len(loader) == 1


def test_open_split_needs_a_root():
    with pytest.raises(ConfigError, match=r"data.root is not set: pass --data DIR"):
        open_split(DataConfig(root=None), "train", 3)


def test_classes_from_classes_txt_win_over_the_config(tmp_path):
    root = make_voc_tree(tmp_path / "v", n_train=2, n_val=1, size=16, classes_txt=True)
    data = DataConfig(root=str(root), classes=CLASSES)
    names, palette = resolve_classes(data, open_split(data, "train", 3), 3)
    assert names == ["back", "red", "green"] and palette[1] == [200, 0, 0]


def test_classes_fall_back_to_config_then_generic_names(voc_root):
    data = DataConfig(root=str(voc_root), classes=CLASSES)
    names, palette = resolve_classes(data, open_split(data, "train", 3), 3)
    assert names == CLASSES and palette == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]  # VOC colours
    data = DataConfig(root=str(voc_root))
    assert resolve_classes(data, open_split(data, "train", 3), 3)[0] == ["class0", "class1", "class2"]
    with pytest.raises(ConfigError, match=r"data.classes lists 3 classes but model.num_classes=4"):
        resolve_classes(DataConfig(root=str(voc_root), classes=CLASSES), open_split(data, "train", 4), 4)


class BrokenFiles(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        raise DataError(f"data/img{i}.png: unreadable image (not a decodable image file)")


def test_a_worker_error_is_re_raised_as_the_original_one_line_error():
    loader = torch.utils.data.DataLoader(BrokenFiles(), batch_size=2, num_workers=1)
    with pytest.raises(DataError) as info:
        with worker_errors():
            next(iter(loader))
    assert str(info.value) == "data/img0.png: unreadable image (not a decodable image file)"


def test_a_preset_on_4_class_data_takes_its_classes_from_classes_txt(tmp_path):
    (tmp_path / "classes.txt").write_text("background\nleaf\nrust\nspot\n")
    cfg = load_config("sekd", [f"data.root={tmp_path}"])  # 3 classes, a 3-colour palette
    notes = adopt_dataset_classes(cfg, set())
    assert cfg.model.num_classes == 4 and cfg.data.classes == ["background", "leaf", "rust", "spot"]
    assert cfg.data.palette is None  # generated for 4 classes
    assert notes == [f"model.num_classes=4 from {tmp_path / 'classes.txt'} (the preset says 3)",
                     "the preset's 3-colour data.palette gives way to a generated one for 4 classes"]

    (tmp_path / "classes.txt").write_text("background 0 0 0\nleaf 0 200 0\nrust 200 90 0\nspot 90 0 0\n")
    cfg = load_config("sekd", [f"data.root={tmp_path}"])
    adopt_dataset_classes(cfg, set())
    assert cfg.data.palette == [[0, 0, 0], [0, 200, 0], [200, 90, 0], [90, 0, 0]]

    cfg = load_config("sekd", [f"data.root={tmp_path}", "model.num_classes=3"])
    assert adopt_dataset_classes(cfg, {"model.num_classes"}) == [] and cfg.model.num_classes == 3  # given: kept
