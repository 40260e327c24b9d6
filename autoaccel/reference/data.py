"""Fashion-MNIST loading from the Debian package ``dataset-fashion-mnist`` (idx files, no download)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from autoaccel.errors import AutoAccelError
from autoaccel.reference.model import NATIVE_SIZE

__all__ = ["DATASET_DIR", "DatasetMissingError", "load_fashion_mnist"]

DATASET_DIR = Path(os.environ.get("AUTOACCEL_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
"""Where the idx files are read from (override with the ``AUTOACCEL_FASHION_MNIST_DIR`` environment variable)."""

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class DatasetMissingError(AutoAccelError, FileNotFoundError):
    """The Fashion-MNIST idx files are not installed."""


def _read_idx(path: Path, header_ints: int) -> np.ndarray:
    """Read one gzip'd idx file (big-endian int32 header, then uint8 data)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    return np.frombuffer(raw, dtype=np.uint8, offset=4 * header_ints)


def load_fashion_mnist(split: str = "train", directory: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a Fashion-MNIST split at the native size.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        directory: folder holding the four ``*-ubyte.gz`` files; defaults to `DATASET_DIR`.

    Returns:
        ``(images, labels)``: uint8 ``(N, 32, 32)`` images (28x28 zero-padded by 2 pixels on each side) and int64
        ``(N,)`` labels in ``0..9``.

    Raises:
        DatasetMissingError: the files are missing (install them with ``apt-get install dataset-fashion-mnist``).
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    directory = Path(directory) if directory is not None else DATASET_DIR
    image_file, label_file = (directory / name for name in _FILES[split])
    for path in (image_file, label_file):
        if not path.is_file():
            raise DatasetMissingError(
                f"Fashion-MNIST file {path} not found; install the Debian package with "
                "`apt-get install dataset-fashion-mnist` or point AUTOACCEL_FASHION_MNIST_DIR at the idx files"
            )
    images = _read_idx(image_file, 4).reshape(-1, 28, 28)
    labels = _read_idx(label_file, 2).astype(np.int64)
    pad = (NATIVE_SIZE - 28) // 2
    images = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.copy())
