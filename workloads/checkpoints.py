"""Checkpoints of a model's weights under a location: a local folder, a `file://` URI on the
testbed, or `s3://` and the other object stores through the same code (fsspec, with the store's
own package installed, such as s3fs).

Each checkpoint is `<location>/<prefix><index:05d>.npz`, written under a temporary name and then
moved into place, so that a shard killed mid-write never leaves a half checkpoint that its
successor would load. The newest is the one with the highest index.
"""

from __future__ import annotations

import io

import numpy as np
from fsspec.core import url_to_fs

from continuum.workloads.sensors import FloatArray

TEMPORARY = ".tmp"


def save_checkpoint(location: str, index: int, weights: FloatArray, prefix: str) -> str:
    """Writes checkpoint `index`; returns its path within the location's filesystem."""
    filesystem, root = url_to_fs(location)
    filesystem.makedirs(root, exist_ok=True)
    final = f"{root.rstrip('/')}/{prefix}{index:05d}.npz"
    temporary = f"{final[: -len('.npz')]}{TEMPORARY}.npz"
    buffer = io.BytesIO()
    np.savez(buffer, weights=weights, index=np.array(index))
    filesystem.pipe_file(temporary, buffer.getvalue())
    filesystem.mv(temporary, final)
    return final


def latest_checkpoint(location: str, prefix: str) -> tuple[int, FloatArray] | None:
    """The newest checkpoint's index and weights, or None when there is none."""
    filesystem, root = url_to_fs(location)
    if not filesystem.isdir(root):
        return None
    found = sorted(
        str(path)
        for path in filesystem.glob(f"{root.rstrip('/')}/{prefix}*.npz")
        if TEMPORARY not in str(path)
    )
    if not found:
        return None
    with np.load(io.BytesIO(filesystem.cat_file(found[-1]))) as stored:
        return int(stored["index"]), np.array(stored["weights"], dtype=np.float64)
