"""A search worker process for the scale-out tests: ``python -m tests._search_worker URL STUDY TRIALS PIPE_DIR``."""

from __future__ import annotations

import sys
import warnings

import optuna
import torch
from diffusers import DiffusionPipeline

from autoaccel.search import search
from autoaccel.workload import Workload

WORKLOAD = Workload(
    prompts=["a red cat", "a blue dog", "a green tree", "a small house"],
    seeds=[0],
    num_inference_steps=8,
    height=32,
    width=32,
    call_kwargs={"max_sequence_length": 32},
)


def main(url: str, study: str, trials: int, pipe_dir: str, slow: float = 0.0) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pipe = DiffusionPipeline.from_pretrained(pipe_dir)
    pipe.set_progress_bar_config(disable=True)
    if slow:  # make trials long enough to be killed in the middle of one
        import time

        hook = pipe.transformer.register_forward_pre_hook(lambda *_: time.sleep(slow))
        _ = hook
    search(
        pipe,
        "lpips<0.2",
        workload=WORKLOAD,
        model_id="tiny/flux",
        n_trials=trials,
        db=url,
        study_name=study,
        validate=False,
        warm_start=False,
        repeats=1,
        heartbeat_interval=1,
        grace_period=3,
        exclude=("magcache", "quantize", "quant_attention", "sparse_attention", "attention_backend", "compile"),
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]) if len(sys.argv) > 5 else 0.0)
