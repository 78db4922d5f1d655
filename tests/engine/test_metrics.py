"""Metrics against a confusion matrix computed by hand.

K = 4 classes; labels/predictions (pixel by pixel):
    target = [0, 0, 0, 1, 1, 255, 7]      255 ignored, 7 out of range: both dropped
    pred   = [0, 0, 2, 1, 0, 1,   1]
Matrix (rows GT, cols pred): [[2,0,1,0],[1,1,0,0],[0,0,0,0],[0,0,0,0]]
Class 2 has no GT but one false positive; class 3 is absent from both.
"""

import json
import math

import numpy as np
import pytest
import torch

from segkd.engine.metrics import ConfusionMatrix

TARGET = np.array([0, 0, 0, 1, 1, 255, 7], np.uint8)
PRED = np.array([0, 0, 2, 1, 0, 1, 1], np.int64)
MATRIX = [[2, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
NAN = float("nan")


def _cm() -> ConfusionMatrix:
    return ConfusionMatrix(4).update(PRED, TARGET)


def _same(a, b):
    return all((math.isnan(x) and math.isnan(y)) or x == pytest.approx(y) for x, y in zip(a, b, strict=True))


def test_matrix_by_hand_numpy_and_torch():
    assert _cm().matrix.tolist() == MATRIX
    cm = ConfusionMatrix(4).update(torch.from_numpy(PRED).view(1, 7), torch.from_numpy(TARGET).view(1, 7))
    assert cm.matrix.tolist() == MATRIX
    assert cm.matrix.dtype == np.int64


def test_nan_mode_per_class_and_means():
    m = _cm().compute("nan", ["bg", "a", "b", "c"])
    assert _same(m.iou, [2 / 4, 1 / 2, 0.0, NAN])  # class 2 predicted but absent: IoU 0, not NaN
    assert _same(m.acc, [2 / 3, 1 / 2, NAN, NAN])  # no GT pixels: recall undefined
    assert _same(m.precision, [2 / 3, 1.0, 0.0, NAN])
    assert _same(m.dice, [4 / 6, 2 / 3, 0.0, NAN])
    assert m.mIoU == pytest.approx(1 / 3)
    assert m.mPA == pytest.approx(7 / 12)
    assert m.mPrecision == pytest.approx(5 / 9)
    assert m.mDice == pytest.approx(4 / 9)
    assert m.aAcc == pytest.approx(3 / 5)
    assert m.fwIoU == pytest.approx((3 * 0.5 + 2 * 0.5) / 5)
    assert m.pixels.tolist() == [3, 2, 0, 0]


def test_zero_mode_is_fastsegformer():
    m = _cm().compute("zero")
    assert m.iou.tolist() == pytest.approx([0.5, 0.5, 0.0, 0.0])
    assert m.acc.tolist() == pytest.approx([2 / 3, 0.5, 0.0, 0.0])
    assert m.mIoU == pytest.approx(1 / 4)
    assert m.mPA == pytest.approx(7 / 24)
    assert m.mPrecision == pytest.approx(5 / 12)
    assert m.mDice == pytest.approx(1 / 3)
    assert m.aAcc == pytest.approx(3 / 5)
    assert m.class_names == ["class0", "class1", "class2", "class3"]


def test_merge_equals_one_global_update():
    a = ConfusionMatrix(4).update(PRED[:3], TARGET[:3])
    b = ConfusionMatrix(4).update(PRED[3:], TARGET[3:])
    assert (a + b).matrix.tolist() == MATRIX
    assert a.merge(b).matrix.tolist() == MATRIX
    with pytest.raises(ValueError, match="3-class"):
        ConfusionMatrix(4).merge(ConfusionMatrix(3))


def test_custom_ignore_index_and_bad_predictions():
    cm = ConfusionMatrix(2, ignore_index=2).update(np.array([0, 1, 1]), np.array([0, 2, 1]))
    assert cm.matrix.tolist() == [[1, 0], [0, 1]]
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        cm.update(np.array([5]), np.array([0]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 2)), np.zeros(4))


def test_empty_matrix():
    assert math.isnan(ConfusionMatrix(2).compute("nan").mIoU)
    assert ConfusionMatrix(2).compute("zero").mIoU == 0.0
    with pytest.raises(ValueError, match="absent"):
        ConfusionMatrix(2).compute("skip")


def test_as_dict_is_strict_json():
    doc = _cm().compute("nan", ["bg", "a", "b", "c"]).as_dict()
    text = json.dumps(doc, allow_nan=False)
    back = json.loads(text)
    assert back["mIoU"] == pytest.approx(1 / 3)
    assert back["per_class"]["c"]["IoU"] is None
    assert back["per_class"]["b"] == {"IoU": 0.0, "Acc": None, "Precision": 0.0, "Dice": 0.0, "pixels": 0}
    assert back["absent"] == "nan" and back["num_pixels"] == 5
