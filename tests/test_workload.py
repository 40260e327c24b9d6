"""Workloads, prompt sets and the hardware profile."""

from __future__ import annotations

import json

import pytest
import torch

from autoaccel import prompts
from autoaccel.hardware import HardwareProfile, arch_class_for
from autoaccel.prompts import PromptFileError
from autoaccel.testing import TINY_DIT_LABELS, default_call_kwargs
from autoaccel.workload import OWNED_KWARGS, Workload, WorkloadError, WorkloadItem

from ._pipes import pipe_for


def _workload(**kw) -> Workload:
    base = dict(prompts=["a cat", "a dog"], seeds=[3, 4], height=32, width=32, num_inference_steps=4)
    return Workload(**{**base, **kw})


# -- workloads --------------------------------------------------------------------------------------------------
def test_items_are_prompts_times_seeds_and_batches_split_them():
    w = _workload(batch_size=3)
    assert w.items() == [
        WorkloadItem("a cat", 3),
        WorkloadItem("a cat", 4),
        WorkloadItem("a dog", 3),
        WorkloadItem("a dog", 4),
    ]
    assert len(w) == 4
    assert [len(b) for b in w.batches()] == [3, 1]
    assert Workload(class_labels=[5, 1]).items() == [(5, 0), (1, 0)]
    assert Workload().items() == [(None, 0)]  # unconditional


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_file_round_trip(tmp_path, suffix):
    w = _workload(name="pets", guidance_scale=3.5, dtype="bfloat16", call_kwargs={"max_sequence_length": 32, "a": [1]})
    path = w.to_file(tmp_path / f"w{suffix}")
    back = Workload.from_file(path)
    assert back == w
    assert back.fingerprint() == w.fingerprint()


def test_fingerprint_is_canonical_and_sensitive():
    w = _workload(call_kwargs={"b": 1, "a": 2})
    assert w.fingerprint() == _workload(call_kwargs={"a": 2, "b": 1}).fingerprint()
    assert w.fingerprint() == w.model_copy(update={"name": "other"}).fingerprint()  # a label only
    assert len({w.fingerprint(), w.subset(1).fingerprint(), _workload(num_inference_steps=5).fingerprint()}) == 3
    # the generation fingerprint ignores which prompts and seeds, so subsets share baseline cache entries
    assert w.subset(1, seeds=1).generation_fingerprint() == w.generation_fingerprint()
    assert _workload(num_inference_steps=5).generation_fingerprint() != w.generation_fingerprint()


def test_subset():
    w = _workload()
    sub = w.subset(1, seeds=1)
    assert sub.items() == [("a cat", 3)]
    assert w.subset(10) == w
    with pytest.raises(WorkloadError, match="at least 1"):
        w.subset(0)


@pytest.mark.parametrize("key", ["generator", "output_type", "latents", "callback_on_step_end", "prompt", "height"])
def test_owned_call_kwargs_are_rejected(key):
    with pytest.raises(WorkloadError, match=f"call_kwargs: may not contain '{key}'"):
        Workload(prompts=["a"], call_kwargs={key: 1})
    with pytest.raises(WorkloadError, match=f"call_kwargs: may not contain '{key}'"):
        Workload.from_dict({"prompts": ["a"], "call_kwargs": {key: 1}})
    assert key in OWNED_KWARGS


def test_invalid_workloads_name_the_field(tmp_path):
    with pytest.raises(WorkloadError, match="both"):
        Workload.from_dict({"prompts": ["a"], "class_labels": [1]})
    with pytest.raises(WorkloadError, match="seeds.*distinct"):
        Workload.from_dict({"seeds": [1, 1]})
    with pytest.raises(WorkloadError, match="batch_size"):
        Workload.from_dict({"batch_size": 0})
    with pytest.raises(WorkloadError, match="steps"):
        Workload.from_dict({"steps": 4})  # extra keys are forbidden
    bad = tmp_path / "w.yaml"
    bad.write_text("prompts: [a\n")
    with pytest.raises(WorkloadError, match="not valid YAML"):
        Workload.from_file(bad)
    with pytest.raises(WorkloadError, match="unsupported"):
        Workload.from_file(tmp_path / "w.toml")


def test_prompt_set_reference_in_a_file_is_loaded_relative_to_it(tmp_path):
    (tmp_path / "mine.txt").write_text("# my prompts\nfirst\n\nsecond\n")
    (tmp_path / "w.json").write_text(json.dumps({"prompts": "mine.txt", "seeds": [0]}))
    assert Workload.from_file(tmp_path / "w.json").prompts == ["first", "second"]
    assert Workload(prompts="calibration").prompts == prompts.load("calibration")


def test_pipeline_kwargs_per_item_generators_and_pt_output():
    w = _workload(call_kwargs={"negative_prompt": "blurry"})
    items = w.items()[1:3]
    kwargs = w.pipeline_kwargs(items)
    assert kwargs["prompt"] == ["a cat", "a dog"]
    assert kwargs["negative_prompt"] == ["blurry", "blurry"]  # matched to the batch
    assert kwargs["output_type"] == "pt"
    assert [g.initial_seed() for g in kwargs["generator"]] == [4, 3]
    assert (kwargs["height"], kwargs["width"], kwargs["num_inference_steps"]) == (32, 32, 4)
    assert "guidance_scale" not in kwargs  # unset fields keep the pipeline's default
    with pytest.raises(WorkloadError):
        w.pipeline_kwargs([])


def test_from_call_kwargs_and_batched_outputs_match_single_items():
    pipe = pipe_for("flux")
    w = Workload.from_call_kwargs(default_call_kwargs("flux"), prompts=["a cat", "a dog"], seeds=[0, 1])
    assert w.call_kwargs == {"max_sequence_length": 32} and w.guidance_scale == 3.5
    assert Workload.from_call_kwargs(default_call_kwargs("flux", seed=7)).seeds == [7]
    batched = w.model_copy(update={"batch_size": 4})
    out = pipe(**batched.pipeline_kwargs(batched.items())).images
    single = torch.cat([pipe(**w.pipeline_kwargs([item])).images for item in w.items()])
    assert out.shape == (4, 3, 32, 32)
    torch.testing.assert_close(out, single, atol=1e-5, rtol=0)  # a seed makes the same image in any batch
    assert not torch.equal(single[0], single[1])  # ... and different seeds make different images


def test_for_pipeline_defaults_and_check():
    flux, dit = pipe_for("flux"), pipe_for("dit")
    w = Workload.for_pipeline(flux, num_inference_steps=4)
    assert w.prompts == prompts.load("calibration") and w.dtype == "float32" and w.name == "calibration"
    wd = Workload.for_pipeline(dit)
    assert wd.prompts is None and wd.class_labels == sorted(TINY_DIT_LABELS)[:8]
    w.check(flux)
    with pytest.raises(WorkloadError, match="bfloat16"):
        w.model_copy(update={"dtype": "bfloat16"}).check(flux)
    with pytest.raises(WorkloadError, match="no argument 'prompt'"):
        w.model_copy(update={"dtype": None}).check(dit)


# -- prompt sets ------------------------------------------------------------------------------------------------
def test_builtin_prompt_sets():
    default, calibration = prompts.load("default"), prompts.load("calibration")
    assert len(default) >= 64 and len(set(default)) == len(default)
    assert 4 <= len(calibration) <= 16 and set(calibration) <= set(default)
    assert sum('"' in p for p in default) >= 8  # text rendering prompts quote the text
    fashion = prompts.load("fashion")
    assert len(fashion) == 10 and "a photo of a sneaker" in fashion
    assert set(prompts.available()) == {"default", "calibration", "fashion"}


def test_txt_and_jsonl_files(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("# comment\n\n  a red cube  \n# another\nsecond prompt\n")
    assert prompts.load(txt) == ["a red cube", "second prompt"]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "one", "id": 1}\n\n{"prompt": "two"}\n')
    assert prompts.load(str(jsonl)) == ["one", "two"]


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("p.jsonl", '{"prompt": "ok"}\n{"prompt": 3}\n', r"p\.jsonl:2: .*non-empty string"),
        ("p.jsonl", '{"prompt": "ok"}\n\nnot json\n', r"p\.jsonl:3: not valid JSON"),
        ("p.jsonl", '["a list"]\n', r"p\.jsonl:1: expected an object"),
        ("p.txt", "ok\n" + "x" * 5000 + "\n", r"p\.txt:2: prompt is 5000 characters"),
        ("p.txt", "# only comments\n\n", r"p\.txt: no prompts"),
        ("p.csv", "a\n", "unsupported prompt file type"),
    ],
)
def test_prompt_file_errors_name_the_line(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PromptFileError, match=match):
        prompts.load(path)


def test_unknown_prompt_set():
    with pytest.raises(PromptFileError, match="neither a built-in prompt set"):
        prompts.load("no-such-set")


# -- hardware ---------------------------------------------------------------------------------------------------
def test_hardware_profile_cpu():
    hw = HardwareProfile.current("cpu")
    assert hw.device_kind == "cpu" and hw.key().startswith("cpu-") and hw.arch_class.startswith("cpu-")
    assert hw.num_threads == torch.get_num_threads() == 1
    assert HardwareProfile.model_validate_json(hw.model_dump_json()) == hw
    assert hw.key() == hw.key().lower() and " " not in hw.key()


def test_arch_classes():
    assert arch_class_for("cuda", capability=(9, 0)) == "hopper"
    assert arch_class_for("cuda", capability=(8, 0)) == "ampere"
    assert arch_class_for("cuda", capability=(8, 6)) == "ampere"
    assert arch_class_for("cuda", capability=(8, 9)) == "ada"
    assert arch_class_for("cuda", capability=(10, 0)) == "blackwell"
    assert arch_class_for("cuda", capability=(6, 1)) == "cuda-sm61"
    assert arch_class_for("cpu", machine="x86_64") == "cpu-x86_64"
    assert arch_class_for("cpu", machine="arm64") == "cpu-arm64"


def test_gpu_keys():
    common = dict(device_kind="cuda", machine="x86_64", torch_version="2", autoaccel_version="0", num_threads=1)
    h100 = HardwareProfile(name="NVIDIA H100 80GB HBM3", arch_class="hopper", compute_capability="9.0", **common)
    assert h100.key() == "nvidia-h100-80gb-hbm3"
    v100 = HardwareProfile(name="Tesla V100-SXM2-16GB", arch_class="volta", **common)
    assert v100.key() == "nvidia-tesla-v100-sxm2-16gb"
