"""Where LPIPS weights come from: explicit path, environment, user cache, then the official sources (checked).

The weights file is one safetensors file in the layout of ``../shared/weights/lpips_alex_v0.1.safetensors``:
``features.{0,3,6,8,10}.{weight,bias}`` (torchvision's ImageNet AlexNet conv layers) and ``lin.{0..4}.weight`` of shape
(1, C, 1, 1) (the LPIPS v0.1 heads for alex).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from autoaccel.metrics._registry import MetricUnavailableError

WEIGHTS_ENV = "AUTOACCEL_LPIPS_WEIGHTS"
CACHE_ENV = "AUTOACCEL_CACHE"
OFFLINE_ENVS = ("AUTOACCEL_OFFLINE", "HF_HUB_OFFLINE")
CACHE_FILENAME = "lpips_alex_v0.1.safetensors"

CONVS = (0, 3, 6, 8, 10)
"""Indices of the conv layers in torchvision's ``alexnet().features`` that LPIPS uses."""

EXPECTED_SHAPES: dict[str, tuple[int, ...]] = {
    "features.0.weight": (64, 3, 11, 11),
    "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5),
    "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3),
    "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3),
    "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3),
    "features.10.bias": (256,),
    **{f"lin.{i}.weight": (1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))},
}


@dataclass(frozen=True)
class Source:
    """An official file: where it is, and the sha256 prefix of its bytes when the publisher names one."""

    url: str
    filename: str
    sha256_prefix: str | None
    fingerprint: str
    """sha256 of the converted tensors (see `fingerprint`); equal to the reference conversion in ../shared/weights."""


ALEXNET = Source(
    url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    filename="alexnet-owt-7be5be79.pth",
    sha256_prefix="7be5be79",  # torchvision names its checkpoints after the sha256 prefix of the file
    fingerprint="99345c1467d7717281e9b6eca5c3f950bef4c9a864ffbd728a2bd7d2fc82c27b",
)
HEADS = Source(
    url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
    filename="lpips_v0.1_alex.pth",
    sha256_prefix=None,  # not published; the tensor fingerprint below is checked instead
    fingerprint="6800ece03b4a3492b925cdddcaf58c204bb9533e77ad555dd7b96b0ca57792e0",
)


def cache_dir() -> Path:
    """The LPIPS cache folder: ``$AUTOACCEL_CACHE/lpips``, else ``$XDG_CACHE_HOME/autoaccel/lpips``, else
    ``~/.cache/autoaccel/lpips``."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "lpips"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "autoaccel" / "lpips"


def offline() -> bool:
    """Whether downloads are disabled (``AUTOACCEL_OFFLINE`` or ``HF_HUB_OFFLINE`` set to a true value)."""
    return any(os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off") for name in OFFLINE_ENVS)


def _missing_message(reason: str) -> str:
    return (
        f"LPIPS weights are not available: {reason}. Set {WEIGHTS_ENV}=/path/to/{CACHE_FILENAME} (a safetensors file "
        f"with keys features.{{0,3,6,8,10}}.{{weight,bias}} and lin.{{0..4}}.weight), pass weights=PATH, or allow "
        f"the one-time download of the official weights (unset {' and '.join(OFFLINE_ENVS)}; they are cached in "
        f"{cache_dir()})."
    )


def resolve_weights(path: str | os.PathLike[str] | None = None, *, download: bool | None = None) -> Path:
    """Finds the LPIPS weights file, downloading and converting the official weights if allowed.

    Args:
        path: Explicit file; wins over everything else and must exist.
        download: Allow fetching the official weights when nothing local is found; default: unless `offline`.

    Raises:
        MetricUnavailableError: No weights and no download possible; the message says what to set.
    """
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise MetricUnavailableError(_missing_message(f"the given path {str(path)!r} is not a file"))
        return path
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        env_path = Path(env).expanduser()
        if not env_path.is_file():
            raise MetricUnavailableError(_missing_message(f"{WEIGHTS_ENV}={env!r} is not a file"))
        return env_path
    cached = cache_dir() / CACHE_FILENAME
    if cached.is_file():
        return cached
    if download is None:
        download = not offline()
    if not download:
        raise MetricUnavailableError(_missing_message(f"no file in the cache and downloads are off ({OFFLINE_ENVS})"))
    return download_weights(cached.parent)


def weights_present(path: str | os.PathLike[str] | None = None) -> bool:
    """Whether `resolve_weights` would succeed without downloading."""
    try:
        resolve_weights(path, download=False)
    except MetricUnavailableError:
        return False
    return True


def fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, little-endian bytes) of each tensor in name order: identifies converted data."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def validate_state(state: dict[str, torch.Tensor], origin: str) -> dict[str, torch.Tensor]:
    """Checks keys, shapes and dtypes of an LPIPS state dict and returns only the expected tensors.

    Raises:
        MetricUnavailableError: Missing keys or wrong shapes; names the keys and the expected layout.
    """
    missing = [k for k in EXPECTED_SHAPES if k not in state]
    if missing:
        extra = sorted(set(state) - set(EXPECTED_SHAPES))[:6]
        raise MetricUnavailableError(
            f"{origin} is not an LPIPS-alex weights file: missing keys {missing[:6]}"
            f"{' ...' if len(missing) > 6 else ''}; found other keys {extra}. Expected the layout of "
            f"{CACHE_FILENAME}: features.{{0,3,6,8,10}}.{{weight,bias}} and lin.{{0..4}}.weight of shape (1, C, 1, 1)"
        )
    for key, shape in EXPECTED_SHAPES.items():
        t = state[key]
        if tuple(t.shape) != shape or not t.is_floating_point():
            raise MetricUnavailableError(
                f"{origin}: {key} has shape {tuple(t.shape)} and dtype {t.dtype}, expected {shape} floating point"
            )
    return {k: state[k] for k in EXPECTED_SHAPES}


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int) -> dict[str, torch.Tensor]:
    try:
        state = load_file(path)
    except Exception as err:  # safetensors raises its own error types for truncated or foreign files
        raise MetricUnavailableError(f"cannot read LPIPS weights {path!r} as safetensors: {err}") from err
    return validate_state(state, f"LPIPS weights {path!r}")


def load_weights(path: str | os.PathLike[str] | None = None) -> dict[str, torch.Tensor]:
    """Resolves (`resolve_weights`), loads and validates the LPIPS weights; cached per file and modification time."""
    resolved = resolve_weights(path)
    return _load_cached(str(resolved), resolved.stat().st_mtime_ns)


def _fetch(source: Source, folder: Path) -> Path:
    """Downloads ``source`` into ``folder`` and checks its sha256 prefix; returns the file."""
    target = folder / source.filename
    digest = hashlib.sha256()
    request = urllib.request.Request(source.url, headers={"User-Agent": "autoaccel"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(target, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as err:
        raise MetricUnavailableError(_missing_message(f"downloading {source.url} failed ({err})")) from err
    if source.sha256_prefix and not digest.hexdigest().startswith(source.sha256_prefix):
        raise MetricUnavailableError(
            f"checksum mismatch for {source.url}: sha256 {digest.hexdigest()} does not start with "
            f"{source.sha256_prefix}; refusing to use it"
        )
    return target


def _convert(backbone: dict[str, torch.Tensor], heads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Maps torchvision's AlexNet and the official LPIPS heads (``lin{k}.model.1.weight``) to our layout."""
    state = {}
    for i in CONVS:
        for kind in ("weight", "bias"):
            key = f"features.{i}.{kind}"
            if key not in backbone:
                raise MetricUnavailableError(f"the AlexNet checkpoint has no {key}; is it torchvision's alexnet?")
            state[key] = backbone[key].float().contiguous()
    for k in range(5):
        key = next((c for c in (f"lin{k}.model.1.weight", f"lin{k}.model.0.weight") if c in heads), None)
        if key is None:
            raise MetricUnavailableError(f"the LPIPS heads file has no lin{k}.model.1.weight")
        state[f"lin.{k}.weight"] = heads[key].float().contiguous()
    return validate_state(state, "converted official weights")


def download_weights(folder: Path) -> Path:
    """Fetches the official AlexNet checkpoint and LPIPS v0.1 heads, checks them, converts and caches the result.

    Both checkpoints are read with ``torch.load(weights_only=True)``; the converted tensors must match the fingerprints
    of the reference conversion. Returns ``folder / CACHE_FILENAME``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        files = [_fetch(source, Path(tmp)) for source in (ALEXNET, HEADS)]
        try:
            backbone, heads = (torch.load(f, map_location="cpu", weights_only=True) for f in files)
        except Exception as err:  # weights_only refuses anything but tensors and plain containers
            raise MetricUnavailableError(f"cannot read the downloaded LPIPS checkpoints safely: {err}") from err
        state = _convert(backbone, heads)
        for source, part in ((ALEXNET, "features."), (HEADS, "lin.")):
            got = fingerprint({k: v for k, v in state.items() if k.startswith(part)})
            if got != source.fingerprint:
                raise MetricUnavailableError(
                    f"the weights from {source.url} differ from the expected ones (fingerprint {got}); "
                    f"set {WEIGHTS_ENV} to a file you trust to bypass the download"
                )
        staged = Path(tmp) / CACHE_FILENAME
        save_file(state, str(staged), metadata={"content": "LPIPS v0.1 AlexNet (converted by autoaccel)"})
        target = folder / CACHE_FILENAME
        os.replace(staged, target)
    return target
