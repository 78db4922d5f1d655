"""Datasets (VOC, Cityscapes, plain folders), transforms, split lists and the demo-data generator."""
