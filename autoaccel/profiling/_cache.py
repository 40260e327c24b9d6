"""On-disk cache of baseline outputs, one entry per workload item, safe against corruption and interruption.

An entry is ``<root>/<model>/<id[:2]>/<id>.safetensors`` (the image under key ``"image"``) plus ``<id>.json``, a
sidecar holding the full key, the sha256 of the tensor file, the shape and the denoiser FLOPs of the item. ``id`` is
the sha256 of the canonical JSON key: model id, revision, a cheap fingerprint of the pipeline's weights (see
`pipeline_fingerprint`), `Workload.generation_fingerprint`, prompt (or label), seed, dtype and device.

An entry whose sidecar is missing or unreadable, whose key differs, whose checksum does not match, whose tensor does
not load or whose shape differs is stale: it is recomputed and overwritten. Both files are written to a temporary
file in the same folder and moved into place with ``os.replace`` (tensor first, sidecar last), so an interrupted
write leaves either the old entry, no entry, or a mismatched pair that the checksum rejects.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from autoaccel.hardware import slug
from autoaccel.workload import Workload, WorkloadItem

__all__ = ["CACHE_ENV", "BaselineCache", "default_cache_dir", "pipeline_fingerprint"]

logger = logging.getLogger("autoaccel")

CACHE_ENV = "AUTOACCEL_CACHE"
ENTRY_VERSION = 1
_SAMPLES_PER_TENSOR = 4096


def default_cache_dir() -> Path:
    """``$AUTOACCEL_CACHE/baselines``, else ``$XDG_CACHE_HOME/autoaccel/baselines``, else
    ``~/.cache/autoaccel/baselines``."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "baselines"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "autoaccel" / "baselines"


def pipeline_fingerprint(pipe: Any) -> str:
    """A cheap sha256 of the pipeline: component classes, scheduler config, every tensor's name, shape and dtype,
    and two weighted sums over at most 4096 evenly strided elements of each tensor.

    It changes when weights are retrained or replaced (almost surely), so a stale cache entry is never reused, and it
    lets an unnamed in-memory pipeline reuse its cache across processes. One pass over a few thousand elements per
    tensor: milliseconds on a GPU, well under a second for a large model on a CPU.
    """
    h = hashlib.sha256(type(pipe).__name__.encode())
    sums: list[torch.Tensor] = []
    for name, component in sorted(getattr(pipe, "components", {}).items()):
        h.update(f"|{name}:{type(component).__name__}".encode())
        if isinstance(component, torch.nn.Module):
            for key, tensor in component.state_dict().items():
                h.update(f"|{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
                sample = _sample_sums(tensor)
                if sample is not None:
                    sums.append(sample)
        elif hasattr(component, "config"):
            h.update(json.dumps(dict(component.config), sort_keys=True, default=str).encode())
        elif hasattr(component, "__len__"):
            h.update(str(len(component)).encode())  # tokenizers: vocabulary size
    if sums:
        h.update(torch.stack(sums).cpu().numpy().tobytes())
    return h.hexdigest()


def _sample_sums(tensor: torch.Tensor) -> torch.Tensor | None:
    if tensor.device.type == "meta" or tensor.numel() == 0:
        return None
    try:
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // _SAMPLES_PER_TENSOR)].to(torch.float64)
        weights = torch.linspace(1.0, 2.0, sample.numel(), dtype=torch.float64, device=sample.device)
        return torch.stack([sample.sum(), (sample * weights).sum()])
    except (RuntimeError, TypeError, NotImplementedError):  # exotic tensor subclasses: shape and dtype only
        return None


@dataclass
class CachedOutput:
    """A baseline output read from (or written to) the cache, with its denoiser FLOPs when counted."""

    image: torch.Tensor
    flops: float | None


class BaselineCache:
    """Baseline outputs of one pipeline and workload, keyed per item.

    Args:
        root: Cache folder (`default_cache_dir` when ``None``).
        pipe: The pipeline, in its unaccelerated state (fingerprinted once here).
        workload: The workload; items are keyed by its `Workload.generation_fingerprint`.
        device: Device key, e.g. ``"cuda:nvidia-h100-80gb-hbm3"`` (outputs differ across devices).
        model_id / revision: Model identity; ``model_id`` also names the subfolder.
    """

    def __init__(
        self,
        root: str | Path | None,
        pipe: Any,
        workload: Workload,
        *,
        device: str,
        model_id: str | None = None,
        revision: str | None = None,
    ) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.folder = self.root / (slug(model_id or "")[:80] or "unnamed")
        from autoaccel.methods._pipeline import denoiser

        self._base = {
            "version": ENTRY_VERSION,
            "model_id": model_id,
            "revision": revision,
            "pipeline": pipeline_fingerprint(pipe),
            "generation": workload.generation_fingerprint(),
            "dtype": str(denoiser(pipe).dtype).removeprefix("torch."),
            "device": device,
        }
        self.stale = 0
        """Entries found but rejected (corrupt, mismatched) since construction."""

    def key(self, item: WorkloadItem) -> dict[str, Any]:
        return {**self._base, "prompt": item.prompt, "seed": item.seed}

    def paths(self, item: WorkloadItem) -> tuple[Path, Path]:
        """``(tensor file, sidecar)`` of an item."""
        digest = _sha256(json.dumps(self.key(item), sort_keys=True, separators=(",", ":")).encode())
        folder = self.folder / digest[:2]
        return folder / f"{digest}.safetensors", folder / f"{digest}.json"

    def load(self, item: WorkloadItem) -> CachedOutput | None:
        """The cached output of ``item``, or ``None`` when absent or stale (stale entries are counted in `stale`)."""
        tensor_path, meta_path = self.paths(item)
        if not meta_path.exists():
            return None
        problem = None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            data = tensor_path.read_bytes()
            if meta.get("key") != self.key(item):
                problem = "its key differs"
            elif meta.get("sha256") != _sha256(data):
                problem = "checksum mismatch"
            else:
                image = load_tensors(data).get("image")
                if image is None or list(image.shape) != meta.get("shape"):
                    problem = "shape mismatch"
                else:
                    return CachedOutput(image, meta.get("flops"))
        except Exception as e:  # unreadable file, bad JSON, bad safetensors header: all mean "recompute"
            problem = f"unreadable ({type(e).__name__}: {e})"
        self.stale += 1
        logger.warning("baseline cache entry %s is stale (%s); recomputing it", tensor_path, problem)
        return None

    def store(self, item: WorkloadItem, output: CachedOutput) -> None:
        """Write an entry atomically; failures to write (read-only cache, full disk) only log a warning."""
        tensor_path, meta_path = self.paths(item)
        image = output.image.detach().to("cpu", torch.float32).contiguous()
        data = save_tensors({"image": image})
        meta = {
            "key": self.key(item),
            "sha256": _sha256(data),
            "shape": list(image.shape),
            "dtype": "float32",
            "flops": output.flops,
            "created_at": datetime.now(timezone.utc).isoformat(),
        }
        try:
            tensor_path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(tensor_path, data)
            _atomic_write(meta_path, (json.dumps(meta, indent=1) + "\n").encode())
        except OSError as e:
            logger.warning("cannot write baseline cache entry %s: %s", tensor_path, e)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
