"""Preference tuning with DPO (Rafailov et al., 2023), written out.

For a prompt with a chosen answer ``c`` and a rejected one ``r``, DPO raises the policy's log-probability of ``c``
relative to a frozen reference and lowers that of ``r``:

    loss = −log σ(β · [(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))])

``β · (log π − log π_ref)`` is the answer's implicit **reward**; the reward margin (chosen − rejected) and the share of
pairs with a positive margin (preference accuracy) are what a run reports. With LoRA the reference is the same model
with its adapters switched off (:func:`kit.models.lora.lora_disabled`): no second copy of the weights.
Log-probabilities are summed over the answer tokens only (the targets that are not ``-100``; see
:func:`kit.train.sft.sft_batch`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kit.train.sft import IGNORE

__all__ = ["sequence_logprobs", "dpo_loss"]


def sequence_logprobs(model, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per sequence, the summed log-probability of its targets (``-100`` targets skipped): ``(B,)``."""
    logits = model(input_ids).float()
    return -F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none").sum(-1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1) -> tuple[torch.Tensor, dict]:
    """DPO's mean loss from the four summed log-probabilities (each ``(B,)``), and ``{"chosen_reward",
    "rejected_reward", "margin", "accuracy"}`` (batch means, floats)."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    chosen = beta * (policy_chosen - ref_chosen.detach())
    rejected = beta * (policy_rejected - ref_rejected.detach())
    margin = chosen - rejected
    loss = -F.logsigmoid(margin).mean()
    return loss, {"chosen_reward": chosen.mean().item(), "rejected_reward": rejected.mean().item(),
                  "margin": margin.mean().item(), "accuracy": (margin > 0).float().mean().item()}
