"""Test-wide settings: offline, one CPU thread, the shared LPIPS weights, a throwaway cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_LPIPS = REPO.parent / "shared" / "weights" / "lpips_alex_v0.1.safetensors"


@pytest.fixture(autouse=True, scope="session")
def _offline_env(tmp_path_factory: pytest.TempPathFactory):
    saved = dict(os.environ)
    os.environ.update(
        {
            "AUTOACCEL_OFFLINE": "1",
            "HF_HUB_OFFLINE": "1",
            "AUTOACCEL_CACHE": str(tmp_path_factory.mktemp("autoaccel-cache")),
            "AUTOACCEL_LPIPS_WEIGHTS": str(SHARED_LPIPS),
            "XDG_DATA_HOME": str(tmp_path_factory.mktemp("xdg-data")),  # the default recipe database lives here
            "HF_HOME": str(tmp_path_factory.mktemp("hf-home")),
        }
    )
    os.environ.pop("AUTOACCEL_CLIP_MODEL", None)
    os.environ.pop("AUTOACCEL_DB_URL", None)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models run 50-100x slower with 2 threads on a loaded 2-core machine; one thread is also deterministic.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
