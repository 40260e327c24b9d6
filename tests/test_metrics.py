"""Metric sanity, LPIPS against an independent float64 implementation, weights resolution (offline), small images."""

from __future__ import annotations

import hashlib
import math
import urllib.request
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from autoaccel import metrics
from autoaccel.metrics import MetricInputError, MetricUnavailableError
from autoaccel.metrics import _lpips_weights as lw

SHARED_LPIPS = Path(__file__).resolve().parents[1].parent / "shared/weights/lpips_alex_v0.1.safetensors"
NOISE_LEVELS = (0.01, 0.05, 0.1, 0.3)
FULL_REFERENCE = ("lpips", "psnr", "ssim", "ms_ssim")

needs_weights = pytest.mark.skipif(not SHARED_LPIPS.is_file(), reason=f"offline LPIPS weights missing: {SHARED_LPIPS}")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: the shared CI box has 2 cores, and tiny convolutions stall on busy OpenMP workers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def offline_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Offline, an empty private cache, the shared LPIPS weights, and a urlopen that records and refuses calls."""
    monkeypatch.setenv("AUTOACCEL_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("AUTOACCEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(lw.WEIGHTS_ENV, str(SHARED_LPIPS))
    monkeypatch.delenv("AUTOACCEL_CLIP_MODEL", raising=False)
    calls: list[str] = []

    def refuse(request, *args, **kwargs):
        calls.append(getattr(request, "full_url", str(request)))
        raise AssertionError("network access in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


def images(n: int = 4, size: tuple[int, int] = (32, 32), seed: int = 0) -> torch.Tensor:
    """Smooth random images (blurred noise plus gradients), so perturbations are visible to every metric."""
    g = torch.Generator().manual_seed(seed)
    x = F.avg_pool2d(torch.rand(n, 3, *size, generator=g), 5, stride=1, padding=2, count_include_pad=False)
    ramp = torch.linspace(0, 1, size[1]).view(1, 1, 1, -1)
    return (0.6 * x + 0.4 * ramp).clamp(0, 1)


def noisy(x: torch.Tensor, level: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + level * torch.randn(x.shape, generator=g)).clamp(0, 1)


def reference_lpips(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Straightforward float64 LPIPS-alex v0.1 written from the paper/README, independent of the package code."""
    w = {k: v.double() for k, v in load_file(str(SHARED_LPIPS)).items()}
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)

    def features(img: torch.Tensor) -> list[torch.Tensor]:
        h = ((img.double() * 2 - 1) - shift) / scale
        h1 = torch.relu(F.conv2d(h, w["features.0.weight"], w["features.0.bias"], stride=4, padding=2))
        h2 = torch.relu(F.conv2d(F.max_pool2d(h1, 3, 2), w["features.3.weight"], w["features.3.bias"], padding=2))
        h3 = torch.relu(F.conv2d(F.max_pool2d(h2, 3, 2), w["features.6.weight"], w["features.6.bias"], padding=1))
        h4 = torch.relu(F.conv2d(h3, w["features.8.weight"], w["features.8.bias"], padding=1))
        h5 = torch.relu(F.conv2d(h4, w["features.10.weight"], w["features.10.bias"], padding=1))
        return [h1, h2, h3, h4, h5]

    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for k, (a, b) in enumerate(zip(features(x), features(y), strict=True)):
        a = a / (torch.linalg.vector_norm(a, dim=1, keepdim=True) + 1e-10)
        b = b / (torch.linalg.vector_norm(b, dim=1, keepdim=True) + 1e-10)
        weighted = (w[f"lin.{k}.weight"].view(1, -1, 1, 1) * (a - b) ** 2).sum(dim=1)
        total += weighted.mean(dim=(1, 2))
    return total


# --- registry ---------------------------------------------------------------------------------------------------


def test_registry_names_directions_and_aliases():
    assert metrics.available() == ["clip_score", "lpips", "ms_ssim", "psnr", "ssim"]
    assert metrics.get("MS-SSIM").name == "ms_ssim"
    assert metrics.get(" Clip ").name == "clip_score"
    assert not metrics.get("lpips").higher_is_better
    assert all(metrics.get(n).higher_is_better for n in ("psnr", "ssim", "ms_ssim", "clip_score"))
    assert all(metrics.get(n).description for n in metrics.available())
    with pytest.raises(KeyError, match="known metrics: clip_score, lpips"):
        metrics.get("fid")
    with pytest.raises(ValueError, match="already registered"):
        metrics.register(metrics.MetricSpec("psnr", metrics.psnr, True, "again"))


@needs_weights
def test_compute_dispatches_to_the_metric_functions():
    x, y = images(), noisy(images(), 0.05)
    for name in FULL_REFERENCE:
        torch.testing.assert_close(metrics.compute(name, y, x), getattr(metrics, name)(y, x))
    assert metrics.get("lpips").ready() and metrics.get("psnr").ready()


# --- sanity -------------------------------------------------------------------------------------------------------


@needs_weights
def test_identical_inputs():
    x = images()
    assert metrics.lpips(x, x).abs().max() < 1e-6
    assert torch.isinf(metrics.psnr(x, x)).all() and (metrics.psnr(x, x) > 0).all()
    torch.testing.assert_close(metrics.ssim(x, x), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(metrics.ms_ssim(x, x), torch.ones(4, dtype=torch.float64))


@needs_weights
@pytest.mark.parametrize("size", [(32, 32), (64, 80)])
def test_stronger_noise_scores_monotonically_worse(size):
    x = images(size=size)
    values = {
        name: torch.stack([metrics.compute(name, noisy(x, s), x) for s in NOISE_LEVELS]) for name in FULL_REFERENCE
    }
    assert (values["lpips"].diff(dim=0) > 0).all(), values["lpips"]
    for name in ("psnr", "ssim", "ms_ssim"):
        assert (values[name].diff(dim=0) < 0).all(), (name, values[name])


@needs_weights
@pytest.mark.parametrize("name", FULL_REFERENCE)
def test_symmetric_and_batch_consistent(name):
    x, y = images(), noisy(images(), 0.1)
    batch = metrics.compute(name, y, x)
    assert batch.shape == (4,)
    torch.testing.assert_close(metrics.compute(name, x, y), batch, rtol=1e-5, atol=1e-6)
    singles = torch.cat([metrics.compute(name, y[i : i + 1], x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(singles, batch, rtol=1e-5, atol=1e-6)


def test_psnr_and_ssim_exact_values():
    x = torch.full((1, 3, 16, 16), 0.5)
    y = torch.full((1, 3, 16, 16), 0.6)
    assert metrics.psnr(y, x).item() == pytest.approx(20.0, abs=1e-5)  # MSE 0.01
    c1 = 0.01**2  # constant images: variance 0, so SSIM is the luminance term only
    assert metrics.ssim(y, x).item() == pytest.approx((2 * 0.5 * 0.6 + c1) / (0.25 + 0.36 + c1), abs=1e-6)


# --- LPIPS specifics --------------------------------------------------------------------------------------------


@needs_weights
@pytest.mark.parametrize("size", [(32, 32), (24, 40), (64, 80)])
def test_lpips_matches_independent_float64_implementation(size):
    x, y = images(3, size, seed=2), noisy(images(3, size, seed=2), 0.1)
    resized = metrics.resize_for_lpips(x.double()), metrics.resize_for_lpips(y.double())
    expected = reference_lpips(*resized)
    assert expected.min() > 0.005  # a non-trivial distance, so the comparison means something
    torch.testing.assert_close(metrics.lpips(x.double(), y.double()), expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(metrics.lpips(x, y).double(), expected, rtol=1e-4, atol=1e-6)


def test_lpips_resize_rule():
    x = torch.rand(2, 3, 32, 48)
    assert metrics.resize_for_lpips(x).shape[-2:] == (64, 96)
    assert metrics.resize_for_lpips(torch.rand(1, 3, 70, 64)).shape[-2:] == (70, 64)
    with pytest.raises(MetricInputError, match="too small"):
        metrics.resize_for_lpips(torch.rand(1, 3, 16, 16), min_size=None)


@needs_weights
def test_lpips_requires_rgb():
    with pytest.raises(MetricInputError, match="3 channels"):
        metrics.lpips(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))


def test_missing_weights_error_says_what_to_set(monkeypatch, offline_env):
    monkeypatch.delenv(lw.WEIGHTS_ENV)
    with pytest.raises(MetricUnavailableError, match="AUTOACCEL_LPIPS_WEIGHTS") as err:
        metrics.lpips(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert "AUTOACCEL_OFFLINE" in str(err.value)
    assert not metrics.get("lpips").ready()
    assert offline_env == []  # offline: no download was attempted
    monkeypatch.setenv(lw.WEIGHTS_ENV, "/nonexistent/lpips.safetensors")
    with pytest.raises(MetricUnavailableError, match="AUTOACCEL_LPIPS_WEIGHTS='/nonexistent"):
        metrics.resolve_lpips_weights()
    with pytest.raises(MetricUnavailableError, match="given path"):
        metrics.resolve_lpips_weights("/nonexistent/other.safetensors")


@needs_weights
def test_bad_weights_layout_is_rejected(tmp_path):
    state = load_file(str(SHARED_LPIPS))
    official_names = {
        k.replace("lin.", "lin").replace(".weight", ".model.1.weight") if k.startswith("lin.") else k: v
        for k, v in state.items()
    }
    save_file(official_names, str(tmp_path / "renamed.safetensors"))
    with pytest.raises(MetricUnavailableError, match=r"missing keys \['lin.0.weight'"):
        metrics.lpips(images(1), images(1), weights=tmp_path / "renamed.safetensors")
    state["lin.2.weight"] = state["lin.2.weight"][:, :100]
    save_file(state, str(tmp_path / "shape.safetensors"))
    with pytest.raises(MetricUnavailableError, match=r"lin.2.weight has shape \(1, 100, 1, 1\)"):
        metrics.lpips(images(1), images(1), weights=tmp_path / "shape.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(MetricUnavailableError, match="cannot read"):
        metrics.lpips(images(1), images(1), weights=tmp_path / "junk.safetensors")


@needs_weights
def test_download_converts_checks_and_caches(monkeypatch, tmp_path):
    """The download path with file:// sources shaped like the official checkpoints (no network)."""
    state = load_file(str(SHARED_LPIPS))
    backbone = {k: v for k, v in state.items() if k.startswith("features.")}
    backbone["classifier.1.weight"] = torch.zeros(2, 2)  # the real checkpoint also holds the classifier
    heads = {f"lin{k}.model.1.weight": state[f"lin.{k}.weight"] for k in range(5)}
    official = tmp_path / "official"
    official.mkdir()
    torch.save(backbone, official / "alexnet.pth")  # same format as the official files, read back weights_only
    torch.save(heads, official / "alex.pth")

    def source(name: str, like: lw.Source) -> lw.Source:
        digest = hashlib.sha256((official / name).read_bytes()).hexdigest()
        return lw.Source((official / name).as_uri(), like.filename, digest[:8], like.fingerprint)

    monkeypatch.setattr(
        urllib.request, "urlopen", lambda req, timeout: open(req.full_url.removeprefix("file://"), "rb")
    )
    monkeypatch.setattr(lw, "ALEXNET", source("alexnet.pth", lw.ALEXNET))
    monkeypatch.setattr(lw, "HEADS", source("alex.pth", lw.HEADS))
    monkeypatch.delenv(lw.WEIGHTS_ENV)
    monkeypatch.delenv("AUTOACCEL_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")

    path = metrics.resolve_lpips_weights()
    assert path == tmp_path / "cache" / "lpips" / lw.CACHE_FILENAME
    converted = load_file(str(path))
    assert converted.keys() == state.keys()
    assert all(torch.equal(converted[k], state[k]) for k in state)
    monkeypatch.setattr(urllib.request, "urlopen", None)  # now served from the cache
    assert metrics.resolve_lpips_weights() == path

    path.unlink()
    monkeypatch.setattr(
        urllib.request, "urlopen", lambda req, timeout: open(req.full_url.removeprefix("file://"), "rb")
    )
    monkeypatch.setattr(lw, "ALEXNET", lw.Source(lw.ALEXNET.url, "a.pth", "00000000", lw.ALEXNET.fingerprint))
    with pytest.raises(MetricUnavailableError, match="checksum mismatch"):
        metrics.resolve_lpips_weights()
    monkeypatch.setattr(lw, "ALEXNET", source("alexnet.pth", lw.ALEXNET))
    heads["lin0.model.1.weight"] = heads["lin0.model.1.weight"] * 2
    torch.save(heads, official / "alex.pth")
    monkeypatch.setattr(lw, "HEADS", source("alex.pth", lw.HEADS))
    with pytest.raises(MetricUnavailableError, match="differ from the expected ones"):
        metrics.resolve_lpips_weights()
    assert not path.exists()


def test_cache_dir_honours_environment(monkeypatch, tmp_path):
    assert lw.cache_dir() == tmp_path / "cache" / "lpips"
    monkeypatch.delenv("AUTOACCEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert lw.cache_dir() == tmp_path / "xdg" / "autoaccel" / "lpips"
    monkeypatch.setenv("AUTOACCEL_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "false")
    assert not lw.offline()


# --- small images, videos, validation ------------------------------------------------------------------------------


def test_small_image_rules():
    assert metrics.ssim_window(64, 64) == (11, 1.5)
    assert metrics.ssim_window(8, 20) == (7, pytest.approx(1.5 * 7 / 11))
    assert [metrics.ms_ssim_scales(s, s) for s in (8, 20, 21, 32, 160, 161, 512)] == [1, 1, 2, 2, 4, 5, 5]
    for size in ((8, 8), (5, 9), (16, 40), (32, 32)):
        x = images(2, size)
        for fn in (metrics.ssim, metrics.ms_ssim):
            clean, dirty = fn(noisy(x, 0.02), x), fn(noisy(x, 0.2), x)
            assert torch.isfinite(dirty).all() and (clean > dirty).all() and (clean <= 1).all()


@needs_weights
@pytest.mark.parametrize("name", FULL_REFERENCE)
def test_video_is_mean_over_frames(name):
    ref = images(6).view(2, 3, 3, 32, 32)
    out = noisy(ref, 0.1)
    per_frame = metrics.compute(name, out.flatten(0, 1), ref.flatten(0, 1)).view(2, 3)
    torch.testing.assert_close(metrics.compute(name, out, ref), per_frame.mean(dim=1))
    videos = metrics.compute(name, [out[0], out[1, :2]], [ref[0], ref[1, :2]])
    torch.testing.assert_close(videos, torch.stack([per_frame[0].mean(), per_frame[1, :2].mean()]))


@pytest.mark.parametrize(
    ("images_", "reference", "message"),
    [
        (torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 9), "same shape"),
        (torch.rand(3, 8, 8), torch.rand(3, 8, 8), "4-D"),
        (torch.rand(1, 3, 8, 8) * 1.5 + 0.01, torch.rand(1, 3, 8, 8), r"values in \[0, 1\]"),
        (torch.full((1, 3, 8, 8), math.nan), torch.rand(1, 3, 8, 8), "NaN"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "float"),
        (torch.rand(1, 8, 8, 3).numpy(), torch.rand(1, 3, 8, 8), "torch.from_numpy"),
        (torch.rand(0, 3, 8, 8), torch.rand(0, 3, 8, 8), "empty"),
        (torch.rand(1, 3, 8, 8), None, "reference batch is required"),
    ],
)
def test_invalid_inputs_raise_clear_errors(images_, reference, message):
    with pytest.raises(MetricInputError, match=message):
        metrics.psnr(images_, reference)
    assert issubclass(MetricInputError, ValueError)


def test_small_overshoot_is_clamped():
    x = torch.rand(1, 3, 8, 8)
    assert metrics.psnr(x + 5e-4, x.clamp(0, 1 - 5e-4) + 5e-4).isinf().all()  # within tolerance, then clamped


# --- CLIP score (optional) ------------------------------------------------------------------------------------------


def test_clip_score_unavailable_without_local_weights():
    assert "clip_score" in metrics.available() and not metrics.get("clip_score").ready()
    with pytest.raises(MetricUnavailableError, match="AUTOACCEL_CLIP_MODEL"):
        metrics.compute("clip_score", torch.rand(1, 3, 32, 32), None, prompts="a cat")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    """A randomly initialised tiny CLIP model and tokenizer saved locally (plumbing only: values are meaningless)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    text = dict(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=16,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    vision = dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
    )
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)
    folder = tmp_path_factory.mktemp("clip")
    transformers.CLIPModel(config).save_pretrained(folder)
    transformers.CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    return folder


def test_clip_score_with_local_model(tiny_clip, monkeypatch):
    monkeypatch.setenv("AUTOACCEL_CLIP_MODEL", str(tiny_clip))
    assert metrics.get("clip_score").ready()
    x = images(3, (40, 48))
    prompts = ["a red cat", "dog", "zebra"]
    scores = metrics.compute("clip_score", x, None, prompts=prompts)
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 100)).all()
    singles = torch.cat([metrics.clip_score(x[i : i + 1], prompts=[prompts[i]]) for i in range(3)])
    torch.testing.assert_close(singles, scores, rtol=1e-4, atol=1e-4)
    same = metrics.clip_score(x, prompts="dog")
    torch.testing.assert_close(same[1], scores[1], rtol=1e-4, atol=1e-4)
    video = metrics.clip_score(x.view(1, 3, 3, 40, 48), prompts=["a red cat"])
    torch.testing.assert_close(video, metrics.clip_score(x, prompts="a red cat").mean().view(1))
    with pytest.raises(MetricInputError, match="2 prompts for 3 images"):
        metrics.clip_score(x, prompts=["a", "b"])
    with pytest.raises(MetricInputError, match="prompts="):
        metrics.clip_score(x)
