"""Lesson 10's exercises (right answers pass on fresh inputs, typical mistakes fail naming the case) and teaching fixes."""
import pytest
import torch

from kit.exercises import verdict
from kit.models import bert


def cosine_matrix(A, B):
    A = A / A.norm(dim=1, keepdim=True)
    B = B / B.norm(dim=1, keepdim=True)
    return A @ B.T


def mean_pool_padded(hidden, is_pad):
    real = (~is_pad).to(hidden.dtype).unsqueeze(-1)
    return (hidden * real).sum(dim=1) / real.sum(dim=1)


def bert_mask(ids, special, r, random_ids, mask_id):
    chosen = ~special & (r < 0.15)
    out = ids.clone()
    out[chosen & (r < 0.12)] = mask_id
    swap = chosen & (r >= 0.12) & (r < 0.135)
    out[swap] = random_ids[swap]
    return out, torch.where(chosen, ids, torch.full_like(ids, -100))


@pytest.mark.parametrize("id,fn", [("10.1", cosine_matrix), ("10.2", mean_pool_padded), ("10.3", bert_mask)])
def test_right_answers_pass_on_fresh_inputs(id, fn):
    for _ in range(5):
        assert verdict(id, fn) is None


def test_cosine_without_normalising_fails():
    msg = verdict("10.1", lambda A, B: A @ B.T)
    assert msg and "random A" in msg


def test_cosine_normalised_by_the_whole_matrix_norm_fails():
    msg = verdict("10.1", lambda A, B: (A / A.norm()) @ (B / B.norm()).T)
    assert msg and "random A" in msg


def test_mean_pool_over_every_position_fails():
    msg = verdict("10.2", lambda h, pad: h.mean(1))
    assert msg and "padded to" in msg


def test_mean_pool_with_berts_mask_convention_fails():
    msg = verdict("10.2", lambda h, pad: bert.mean_pool(h, pad))  # kit's own: 1 = real token
    assert msg and "padded to" in msg


def test_mean_pool_dividing_by_T_fails():
    msg = verdict("10.2", lambda h, pad: (h * (~pad).unsqueeze(-1)).sum(1) / h.shape[1])
    assert msg and "padded to" in msg


def test_mask_that_ignores_special_tokens_fails():
    def wrong(ids, special, r, rand, mask_id):
        return bert_mask(ids, torch.zeros_like(special), r, rand, mask_id)
    msg = verdict("10.3", wrong)
    assert msg and "[CLS]/[SEP] special" in msg


def test_mask_every_chosen_token_fails():
    def wrong(ids, special, r, rand, mask_id):
        chosen = ~special & (r < 0.15)
        return ids.masked_fill(chosen, mask_id), torch.where(chosen, ids, torch.full_like(ids, -100))
    msg = verdict("10.3", wrong)
    assert msg and "corrupted ids" in msg


def test_mask_targets_only_where_masked_fails():
    def wrong(ids, special, r, rand, mask_id):
        out, _ = bert_mask(ids, special, r, rand, mask_id)
        return out, torch.where(out != ids, ids, torch.full_like(ids, -100))
    msg = verdict("10.3", wrong)
    assert msg and "targets" in msg


def test_mask_with_closed_intervals_fails_on_the_boundaries():
    def wrong(ids, special, r, rand, mask_id):
        chosen = ~special & (r <= 0.15)
        out = ids.clone()
        out[chosen & (r <= 0.12)] = mask_id
        swap = chosen & (r > 0.12) & (r <= 0.135)
        out[swap] = rand[swap]
        return out, torch.where(chosen, ids, torch.full_like(ids, -100))
    msg = verdict("10.3", wrong)
    assert msg and "boundaries" in msg


def test_mask_that_changes_its_input_is_still_judged_on_kits_copy():
    def in_place(ids, special, r, rand, mask_id):
        chosen = ~special & (r < 0.15)
        targets = torch.where(chosen, ids, torch.full_like(ids, -100))
        ids[chosen & (r < 0.12)] = mask_id
        swap = chosen & (r >= 0.12) & (r < 0.135)
        ids[swap] = rand[swap]
        return ids, targets
    assert verdict("10.3", in_place) is None


def test_kits_mask_tokens_is_not_an_answer():
    assert verdict("10.3", lambda ids, special, r, rand, m: bert.mask_tokens(ids, ~special, m, 1000)) is not None


# ------------------------------------------------------------------ teaching fixes
@pytest.mark.parametrize("total", [1, 2, 3, 9, 10, 11, 25, 57, 100, 1000])
def test_warmup_linear_never_divides_by_zero_and_has_the_right_shape(total):
    """10 % warm-up (at least one step) to 1, then linear decay; a single fine-tuning step gets the full rate."""
    f = [bert.warmup_linear_factor(s, total) for s in range(total)]
    w = max(1, total // 10)
    assert all(0 < x <= 1 for x in f)
    assert f[w - 1] == 1.0 and max(f) == 1.0
    assert all(a <= b for a, b in zip(f[:w], f[1:w]))            # rising during warm-up
    assert all(a >= b for a, b in zip(f[w - 1:], f[w:]))         # then falling
    assert bert.warmup_linear_factor(total, total) == 0.0          # 0 at the end of the run
    if total > w:
        assert f[-1] == pytest.approx(1 / (total - w))


def test_warmup_linear_single_step_through_the_scheduler():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=5e-5)
    sched = bert.warmup_linear(opt, total=1)
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-5)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.0
