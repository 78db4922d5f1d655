"""Datasets (VOC, Cityscapes, plain folders), transforms, split lists and the demo-data generator."""

from segkd.data.dataset import SegDataset, open_dataset
from segkd.data.io import read_class_file, read_classes, read_image, read_mask, read_palette
from segkd.data.layouts import Sample, detect_format
from segkd.data.split import split_dataset

__all__ = [
    "Sample", "SegDataset", "detect_format", "open_dataset", "read_class_file", "read_classes", "read_image",
    "read_mask", "read_palette", "split_dataset",
]
