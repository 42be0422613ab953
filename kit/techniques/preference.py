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

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kit.models.base import evaluating
from kit.models.lora import lora_disabled
from kit.train.sft import IGNORE, sft_batch

__all__ = ["sequence_logprobs", "dpo_loss", "DPOObjective", "dpo_batch", "dpo_train", "preference_scores"]

Triple = tuple[Sequence[int], Sequence[int], Sequence[int]]   # (prompt ids, chosen answer ids, rejected answer ids)


def sequence_logprobs(model, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per sequence, the summed log-probability of its targets (``-100`` targets skipped): ``(B,)``. The output
    layer runs at the scored positions only (``GPT(…, select=)``)."""
    keep = targets != IGNORE
    logits = model(input_ids, select=keep).float()
    token_logp = -F.cross_entropy(logits, targets[keep], reduction="none")
    return torch.zeros(len(targets), dtype=token_logp.dtype, device=token_logp.device).index_add(
        0, keep.nonzero()[:, 0], token_logp)


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


def dpo_batch(triples: Sequence[Triple], pad_id: int = 0, block_size: int | None = None):
    """``(x, y)`` of ``2B`` rows: the ``B`` chosen sequences, then the ``B`` rejected ones (answers scored only)."""
    return sft_batch([(p, c) for p, c, _ in triples] + [(p, r) for p, _, r in triples], pad_id, block_size)


class DPOObjective(nn.Module):
    """``forward(x, y)`` on a :func:`dpo_batch` → DPO's loss: the policy is ``model`` (its LoRA adapters on), the
    reference the same model inside :func:`lora_disabled` (no gradient, no copy). ``stats`` keeps the last batch's."""

    def __init__(self, model: nn.Module, beta: float = 0.1):
        super().__init__()
        self.model, self.beta, self.stats = model, beta, {}

    def forward(self, x, y):
        policy = sequence_logprobs(self.model, x, y)
        with torch.no_grad(), lora_disabled(self.model):
            ref = sequence_logprobs(self.model, x, y)
        b = len(x) // 2
        loss, self.stats = dpo_loss(policy[:b], policy[b:], ref[:b], ref[b:], self.beta)
        return loss


def dpo_train(model: nn.Module, triples: Sequence[Triple], *, steps: int, batch_size: int = 4, lr: float = 1e-3,
              beta: float = 0.1, pad_id: int = 0, device=None, seed: int = 0, progress: bool = True,
              desc: str = "DPO"):
    """Train ``model``'s LoRA adapters with DPO for ``steps`` steps of ``batch_size`` random preference triples with
    :func:`kit.train.fit` (AdamW, cosine schedule, clipping at 1). Returns fit's history."""
    from kit.train.loop import fit
    if steps < 1:
        raise ValueError(f"parameter 'steps' must be >= 1, got {steps}")
    if not triples:
        raise ValueError("dpo_train needs at least one (prompt, chosen, rejected) triple")
    block = getattr(getattr(model, "cfg", None), "block_size", None)
    triples = list(triples)

    def next_batch(step, gen):
        i = torch.randint(len(triples), (batch_size,), generator=gen).tolist()
        return dpo_batch([triples[j] for j in i], pad_id, block)

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters: apply LoRA adapters first")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    return fit(DPOObjective(model, beta), next_batch, None, steps=steps, loss_fn=None, optimizer=opt, lr=lr,
               scheduler="cosine", min_lr=0.1 * lr, clip_grad=1.0, device=device, seed=seed, progress=progress,
               desc=desc, eval_every=max(1, steps // 10))


@torch.no_grad()
def preference_scores(model: nn.Module, triples: Sequence[Triple], beta: float = 0.1, pad_id: int = 0,
                      batch_size: int = 16) -> dict:
    """On held-out triples: ``accuracy`` — the share where the model gives the chosen answer the higher
    log-probability; ``logp_margin`` — the mean of log π(chosen) − log π(rejected); ``reward_margin`` and
    ``reward_accuracy`` — DPO's implicit reward margin against the LoRA-disabled reference (0 before training)."""
    with evaluating(model):
        dev = next(model.parameters()).device
        pol, ref = [], []
        for s in range(0, len(triples), batch_size):
            x, y = dpo_batch(triples[s:s + batch_size], pad_id)
            x, y = x.to(dev), y.to(dev)
            pol.append(sequence_logprobs(model, x, y).view(2, -1))
            with lora_disabled(model):
                ref.append(sequence_logprobs(model, x, y).view(2, -1))
    pol, ref = torch.cat(pol, 1), torch.cat(ref, 1)
    reward = beta * (pol - ref)
    margin = reward[0] - reward[1]
    return {"accuracy": (pol[0] > pol[1]).float().mean().item(), "logp_margin": (pol[0] - pol[1]).mean().item(),
            "reward_margin": margin.mean().item(), "reward_accuracy": (margin > 0).float().mean().item()}
