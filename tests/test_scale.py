"""Lessons 11–14's kit modules: compression and ONNX parity, DDP ≈ one process, DP accounting, federated
splits, and matrix-factorization recovery on synthetic data."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kit.models.mlp import MLP, MLPConfig


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is fastest, and avoids oversubscribing shared cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _mlp(hidden=(32,), seed=0):
    torch.manual_seed(seed)
    return MLP(MLPConfig(64, 10, hidden=hidden)).eval()


# ---------------------------------------------------------------- 11: compression and export
def test_quantized_models_are_smaller_and_agree():
    from kit.techniques import compress as C
    m = _mlp((128, 128))
    X = torch.rand(64, 64)
    dyn, sta = C.dynamic_int8(m), C.static_int8(m, X)
    for q in (dyn, sta):
        assert C.state_bytes(q) < 0.4 * C.state_bytes(m)
        assert (q(X) - m(X)).abs().max() < 0.1  # int8 rounding, not a different function
    row = C.measure("int8", dyn, X, m(X).argmax(1), repeats=3, batches=(1, 8))
    assert row["accuracy"] > 0.9 and row["latency_ms_b1"] > 0 and row["size_kb"] > 0


def test_global_pruning_hits_the_sparsity_and_keeps_the_largest_weights():
    from kit.techniques import compress as C
    m = _mlp((64,))
    for a in (0.0, 0.5, 0.9):
        p = C.prune_global(m, a)
        assert abs(C.sparsity(p) - a) < 1e-3
        assert not any(n.endswith("_orig") for n, _ in p.named_parameters())  # made permanent
    p = C.prune_global(m, 0.5)
    kept = torch.cat([l.weight.flatten() for l in p.net if isinstance(l, torch.nn.Linear)])
    orig = torch.cat([l.weight.flatten() for l in m.net if isinstance(l, torch.nn.Linear)])
    assert kept[kept != 0].abs().min() >= orig[kept == 0].abs().max()


def test_distillation_loss_limits():
    from kit.techniques import compress as C
    torch.manual_seed(0)
    s, t, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    assert torch.allclose(C.distillation_loss(4.0, 0.0)(s, y, t), F.cross_entropy(s, y))
    assert C.distillation_loss(4.0, 1.0)(t, y, t).abs() < 1e-6  # student = teacher: no KL
    kl = F.kl_div(F.log_softmax(s / 2, -1), F.softmax(t / 2, -1), reduction="batchmean") * 4
    assert torch.allclose(C.distillation_loss(2.0, 1.0)(s, y, t), kl, atol=1e-6)
    student = torch.nn.Linear(10, 10)
    out = C.Distillation(student, 2.0, 1.0)(s, y, t)
    assert torch.allclose(out["loss"], C.distillation_loss(2.0, 1.0)(student(s), y, t))
    assert 0 <= float(out["acc"]) <= 1


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_onnx_export_matches_pytorch(tmp_path, dynamo):
    pytest.importorskip("onnxruntime")
    from kit.techniques import export as E
    if dynamo:
        pytest.importorskip("onnxscript")
    m = _mlp((32, 32))
    path, how = E.to_onnx(m, torch.rand(2, 64), tmp_path / "m.onnx", dynamo=dynamo)
    sess = E.ort_session(path)
    X = torch.rand(17, 64)  # another batch size: the batch axis is symbolic
    assert E.parity(m, sess, X) <= 1e-5
    info = E.onnx_summary(path)
    assert info["inputs"]["x"][0] == "batch" and info["bytes"] > 4 * sum(p.numel() for p in m.parameters())


# ---------------------------------------------------------------- 12: data parallel
def test_global_batches_shard_exactly():
    from kit.techniques import distributed as D
    batches = D.global_batches(103, 10, epoch=0, seed=0)
    assert len(batches) == 10 and all(len(b) == 10 for b in batches)
    assert torch.equal(torch.cat([D.shard(batches[0], r, 2) for r in range(2)]), batches[0])
    with pytest.raises(ValueError):
        D.shard(torch.arange(5), 0, 2)


@pytest.mark.timeout(600)
def test_ddp_two_processes_equal_one_process(tmp_path):
    """torchrun, 2 CPU processes (gloo), B/2 each == 1 process with batch B; manual all_reduce == DDP."""
    from kit.techniques import distributed as D
    cfg = D.DDPConfig(epochs=1, batch_size=64, hidden=32, seed=0)
    ref = D.train_reference(cfg)
    res = D.launch(2, cfg, out=tmp_path / "ddp.json", timeout=600)
    single, ddp = np.array(ref["losses"]), np.array(res["losses_ddp"])
    assert res["world_size"] == 2 and res["backend"] == "gloo" and len(ddp) == len(single) > 10
    assert np.max(np.abs(ddp - single) / single) <= 1e-5
    assert np.array_equal(np.array(res["losses_manual"]), ddp)
    assert res["first_step_grad_max_diff"] <= 1e-6 and res["replica_max_diff"] == 0.0
    assert max((ref["state"][k] - res["state"][k]).abs().max().item() for k in ref["state"]) < 1e-5


def test_multi_node_commands():
    from kit.techniques import distributed as D
    cmds = D.multi_node_commands(nnodes=2, nproc_per_node=4, endpoint="h:29500")
    assert len(cmds) == 2 and "--node-rank=1" in cmds[1] and "--rdzv-backend=c10d" in cmds[0]
    assert all("--rdzv-endpoint=h:29500" in c and "--nnodes=2" in c for c in cmds)


# ---------------------------------------------------------------- 13: privacy
def test_splits_cover_every_example_once_and_dirichlet_skews():
    from kit.techniques import privacy as P
    y = np.repeat(np.arange(10), 50)
    for parts in (P.iid_split(len(y), 7, 0), P.dirichlet_split(y, 7, 0.3, 0)):
        assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(y)))
    skew = P.label_counts(y, P.dirichlet_split(y, 7, 0.1, 0))
    flat = P.label_counts(y, P.iid_split(len(y), 7, 0))
    share = lambda c: (c / c.sum(1, keepdims=True)).max(1).mean()  # noqa: E731
    assert share(skew) > share(flat) + 0.2


def test_average_states_weights_by_size():
    from kit.techniques import privacy as P
    out = P.average_states([{"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([3.0, 4.0])}], [1, 3])
    assert torch.allclose(out["w"], torch.tensor([2.5, 3.0]))


def test_per_sample_grads_and_clipping():
    from kit.techniques import privacy as P
    m = _mlp((16,))
    X, y = torch.rand(5, 64), torch.randint(0, 10, (5,))
    g = P.per_sample_grads(m, X, y)
    for i in range(5):  # one example at a time with ordinary autograd
        m.zero_grad()
        F.cross_entropy(m(X[i:i + 1]), y[i:i + 1]).backward()
        for n, p in m.named_parameters():
            assert torch.allclose(g[n][i], p.grad, atol=1e-6)
    _, before, after = P.clip_per_sample(g, 0.01)
    assert (after <= 0.01 + 1e-6).all() and (before > after).all()


def test_epsilon_decreases_as_noise_grows():
    pytest.importorskip("opacus")
    from kit.techniques import privacy as P
    sigmas = [0.5, 1.0, 2.0, 4.0]
    for acc in ("rdp", "prv"):
        eps = [P.epsilon_for(s, 0.05, 200, 1e-5, acc) for s in sigmas]
        assert all(a > b > 0 for a, b in zip(eps, eps[1:])), (acc, eps)
    # more steps or a larger sampling rate cost more privacy
    assert P.epsilon_for(1.0, 0.05, 400) > P.epsilon_for(1.0, 0.05, 200) and P.epsilon_for(1.0, 0.1, 200) > P.epsilon_for(1.0, 0.05, 200)


def test_train_dp_reports_the_accountants_epsilon():
    pytest.importorskip("opacus")
    from kit.techniques import privacy as P
    torch.manual_seed(0)
    X, y = torch.rand(256, 64), torch.randint(0, 10, (256,))
    runs = [P.train_dp(_mlp((16,)), (X, y), (X, y), noise_multiplier=1.0, epochs=1, batch_size=32, seed=0)
            for _ in range(2)]
    r = runs[0]
    assert r["steps"] > 0 and r["epsilon"] == pytest.approx(P.epsilon_for(1.0, r["sample_rate"], r["steps"], 1e-5))
    assert runs[0]["test_acc"] == runs[1]["test_acc"]  # seeded: Poisson sampling and noise reproduce


# ---------------------------------------------------------------- 14: recommender
def test_synthetic_ratings_and_registry():
    import kit.data
    import kit.data.ratings as KR
    assert "movielens" in kit.data.names()
    r = kit.data.load("movielens", source="embedded", verbose=False)
    assert r.truth is not None and len(r) > 10_000 and r.users.max() < r.n_users and r.items.max() < r.n_items
    assert len(set(zip(r.users.tolist(), r.items.tolist()))) == len(r)  # no duplicate (user, item)
    resid = r.ratings - r.true_ratings(r.users, r.items)
    assert abs(resid.std() - r.truth["noise"]) < 0.02
    a, b = KR.synthetic_ratings(seed=3), KR.synthetic_ratings(seed=3)
    assert np.array_equal(a.ratings, b.ratings)


def test_movielens_zip_reader_and_traversal_check(tmp_path):
    import kit.data.ratings as KR
    from kit.data import DataError
    good = tmp_path / "ml.zip"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("ml-latest-small/ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.0,0\n1,20,3.5,0\n7,10,5.0,0\n")
        z.writestr("ml-latest-small/movies.csv", "movieId,title,genres\n10,A (1990),Drama\n20,B (1991),Comedy\n")
    r = KR._movielens_real([good])
    assert (r.n_users, r.n_items, len(r)) == (2, 2, 3) and r.item_names == ["A (1990)", "B (1991)"]
    assert r.users.tolist() == [0, 0, 1] and r.ratings.tolist() == [4.0, 3.5, 5.0]
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("ml-latest-small/ratings.csv", "userId,movieId,rating,timestamp\n")
        z.writestr("../evil.txt", "x")
    with pytest.raises(DataError, match="unsafe"):
        KR._movielens_real([bad])


def test_mf_recovers_synthetic_truth():
    import kit.data
    import kit.data.ratings as KR
    from kit.models import mf
    from kit.train import fit
    r = KR.synthetic_ratings(n_users=300, n_items=200, per_user=40, seed=1)
    tr, va, te = kit.data.split(len(r), (0.8, 0.1, 0.1), seed=0)
    UI, R = torch.tensor(np.stack([r.users, r.items], 1)), torch.tensor(r.ratings)
    torch.manual_seed(0)
    m = mf.MatrixFactorization(r.n_users, r.n_items, k=4, mu=R[tr].mean().item(), l2=0.05)
    fit(m, (UI[tr], R[tr]), (UI[va], R[va]), loss_fn=None, optimizer="adam", lr=0.01, epochs=25, batch_size=256, device="cpu", seed=0, progress=False)
    with torch.no_grad():
        pred = m.eval()(UI[te]).numpy()
    clean = r.true_ratings(r.users[te], r.items[te])
    assert np.corrcoef(pred, clean)[0, 1] > 0.9
    assert np.sqrt(np.mean((pred - r.ratings[te]) ** 2)) < 1.4 * r.truth["noise"]
    from scipy.linalg import subspace_angles
    assert np.degrees(subspace_angles(m.Q.weight.detach().numpy(), r.truth["Q"])).max() < 45


def test_ranking_metrics_by_hand():
    from kit.models import mf
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.4]])
    train_pos = [np.array([0]), np.array([], dtype=int)]
    test_pos = [np.array([2]), np.array([], dtype=int)]  # user 1 has nothing held out: skipped
    out = mf.ranking_metrics(scores, train_pos, test_pos, k=2)  # user 0 ranks 1, 2, 3 → hit at rank 2
    assert out["users"] == 1 and out["precision@2"] == 0.5 and out["recall@2"] == 1.0
    assert out["ndcg@2"] == pytest.approx(1 / np.log2(3))


def test_bpr_negatives_are_resampled_reproducibly():
    from kit.models import mf
    aug = mf.resample_negatives(50)
    xb = torch.zeros(100, 3, dtype=torch.long)
    a, b = aug(xb, torch.Generator().manual_seed(1)), aug(xb, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a[:, 2].unique().numel() > 20 and (a[:, :2] == 0).all()
