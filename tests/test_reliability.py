"""Training faults and bad files: SIGKILL mid-run resumes to identical results; clear errors on bad checkpoints."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kit.train import CheckpointError, load_checkpoint

JOB = Path(__file__).with_name("train_job.py")
EPOCHS = 12


def _run(ckpt, out, sleep=0.0):
    return subprocess.Popen([sys.executable, str(JOB), str(ckpt), str(out), str(EPOCHS), str(sleep)],
                            env={**os.environ, "PYTHONPATH": str(JOB.parents[1])})


def test_sigkill_mid_run_resumes_to_the_same_result(tmp_path):
    ref_out = tmp_path / "ref.json"
    assert _run(tmp_path / "ref.pt", ref_out).wait(timeout=300) == 0
    reference = json.loads(ref_out.read_text())

    ckpt, out = tmp_path / "job.pt", tmp_path / "job.json"
    proc = _run(ckpt, out, sleep=0.3)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until a few epochs are checkpointed, then kill -9
        if ckpt.exists() and load_checkpoint(ckpt)["epoch"] >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(ckpt)["epoch"]
    assert 4 <= killed_at < EPOCHS and not out.exists(), "the job must have been killed mid-run"

    assert _run(ckpt, out).wait(timeout=300) == 0  # restart: resumes from the last atomic checkpoint
    resumed = json.loads(out.read_text())
    assert resumed == reference, f"killed at epoch {killed_at}; resumed run differs from uninterrupted run"


def test_truncated_or_missing_checkpoint_is_a_clear_error(tmp_path):
    p = tmp_path / "ck.pt"
    torch.save({"model": {"w": torch.ones(1000)}}, p)
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(p)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
