"""What a measurement ran on: `HardwareProfile.current(device)`, with a short `key()` and an `arch_class`.

The key names the exact device (``"nvidia-h100-80gb-hbm3"``, ``"cpu-intel-xeon-platinum-8375c"``); the arch class
groups devices that share kernels and performance traits (``"hopper"``, ``"ampere"``, ``"cpu-x86_64"``), so a recipe
measured on one device can fall back to another of the same class.

Example:
    >>> from autoaccel.hardware import HardwareProfile
    >>> hw = HardwareProfile.current("cpu")
    >>> hw.key(), hw.arch_class
    ('cpu-intel-xeon', 'cpu-x86_64')
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

__all__ = ["HardwareProfile", "arch_class_for", "slug"]

# (major, minor) compute capability -> NVIDIA architecture; matched on the exact pair first, then on the major.
_NVIDIA_ARCH = {
    (7, 0): "volta",
    (7, 2): "volta",
    (7, 5): "turing",
    (8, 9): "ada",
    (8,): "ampere",
    (9,): "hopper",
    (10,): "blackwell",
    (11,): "blackwell",
    (12,): "blackwell",
}
_CPU_NOISE = re.compile(r"\((r|tm|c)\)|\bcpu\b|@.*$|\b\d+-core\b|\bprocessor\b", re.IGNORECASE)


class HardwareProfile(BaseModel):
    """The device and software a measurement ran on. JSON-serialisable; build it with `current`.

    Args:
        device_kind: ``torch.device.type``: ``"cuda"``, ``"cpu"``, ``"mps"``, ...
        name: GPU name (``torch.cuda.get_device_name``) or CPU model (``/proc/cpuinfo``, else ``platform``).
        memory_bytes: GPU memory, or physical RAM for the CPU (``None`` when unknown).
        driver_version: NVIDIA driver (from ``nvidia-smi``; ``None`` when unavailable).
        cuda_version: CUDA (or HIP) version torch was built with; ``None`` on CPU-only builds.
        compute_capability: ``"9.0"`` for an H100; ``None`` off CUDA.
        arch_class: See `arch_class_for`.
        machine: ``platform.machine()`` (``"x86_64"``, ``"arm64"``).
        torch_version / diffusers_version / autoaccel_version: Software versions.
        num_threads: ``torch.get_num_threads()`` when the profile was taken.
        cpu_count: Logical CPUs (``os.cpu_count()``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_kind: str
    name: str
    memory_bytes: int | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    compute_capability: str | None = None
    arch_class: str
    machine: str
    torch_version: str
    diffusers_version: str | None = None
    autoaccel_version: str
    num_threads: int
    cpu_count: int | None = None

    @classmethod
    def current(cls, device: str | torch.device | None = None) -> HardwareProfile:
        """Profile of ``device`` (default: ``cuda`` when available, else ``cpu``) in this process."""
        from autoaccel import __version__

        dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        fields: dict[str, Any] = {
            "device_kind": dev.type,
            "machine": platform.machine() or "unknown",
            "torch_version": torch.__version__,
            "diffusers_version": _diffusers_version(),
            "autoaccel_version": __version__,
            "num_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "cuda_version": torch.version.cuda or getattr(torch.version, "hip", None),
        }
        if dev.type == "cuda":
            index = dev.index if dev.index is not None else torch.cuda.current_device()
            props = torch.cuda.get_device_properties(index)
            capability = (props.major, props.minor)
            fields.update(
                name=props.name,
                memory_bytes=int(props.total_memory),
                compute_capability=f"{props.major}.{props.minor}",
                driver_version=_nvidia_driver(),
                arch_class=arch_class_for("cuda", capability=capability, name=props.name),
            )
        else:
            fields.update(
                name=_cpu_name() if dev.type == "cpu" else dev.type,
                memory_bytes=_ram_bytes() if dev.type == "cpu" else None,
                arch_class=arch_class_for(dev.type, machine=fields["machine"]),
            )
        return cls(**fields)

    def key(self) -> str:
        """Short stable identifier of the device: ``"nvidia-h100-80gb-hbm3"``, ``"cpu-amd-epyc-7763"``."""
        if self.device_kind == "cpu":
            return f"cpu-{slug(_CPU_NOISE.sub(' ', self.name)) or slug(self.machine)}"
        name = slug(self.name)
        if self.device_kind == "cuda" and self.arch_class not in ("cdna", "rdna") and not name.startswith("nvidia"):
            name = f"nvidia-{name}"
        return name or self.device_kind


def slug(text: str) -> str:
    """Lowercase ``text`` with runs of other characters than ``a-z0-9`` replaced by one ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def arch_class_for(
    device_kind: str, *, capability: tuple[int, int] | None = None, name: str = "", machine: str = ""
) -> str:
    """The architecture class used for recipe fallbacks.

    NVIDIA GPUs map their compute capability to ``volta``, ``turing``, ``ampere``, ``ada``, ``hopper`` or
    ``blackwell`` (``cuda-sm<NN>`` when unknown); AMD GPUs (ROCm builds) are ``cdna`` / ``rdna``; CPUs are
    ``cpu-<machine>``; anything else is its device kind (``mps``).
    """
    if device_kind == "cuda":
        if getattr(torch.version, "hip", None):
            return "rdna" if "radeon" in name.lower() else "cdna"
        if capability is not None:
            arch = _NVIDIA_ARCH.get(capability) or _NVIDIA_ARCH.get(capability[:1])
            return arch or f"cuda-sm{capability[0]}{capability[1]}"
        return "cuda"
    if device_kind == "cpu":
        return f"cpu-{re.sub(r'[^a-z0-9_]+', '-', machine.lower()).strip('-') or 'unknown'}"
    return device_kind


def _diffusers_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("diffusers")
    except Exception:
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin" and shutil.which("sysctl"):
        out = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        if out:
            return out
    return platform.processor() or platform.machine() or "unknown"


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _nvidia_driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return out.splitlines()[0].strip() if out else None


def _run(cmd: list[str]) -> str | None:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
