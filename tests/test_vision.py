"""Vision pieces: the CNN, augmentation, IDX reading and vision datasets, explanation methods, figures."""
from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest
import torch

import kit.data as data
from kit.techniques import explain as E
from kit.data.augment import affine_matrices, apply_affine, augment, random_affine
from kit.data import Source
from kit.data.vision_datasets import Images, _IdxDataset, read_idx, vision_split
from kit.models.cnn import CNN, CNNConfig, as_images


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = CNN(CNNConfig(channels=(4, 8)))
    # non-trivial BatchNorm statistics, as after training
    m.train()
    with torch.no_grad():
        m(torch.rand(64, 1, 28, 28))
    return m.eval()


@pytest.fixture
def images():
    return torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------- model
def test_cnn_shapes_flat_and_image_input(model):
    x = torch.rand(5, 1, 28, 28)
    assert model(x).shape == (5, 10)
    assert torch.equal(model(x), model(x.flatten(1)))
    assert len(model.conv_layers()) == 2
    assert model.head[-1].in_features == 8 * 7 * 7
    gap = CNN(CNNConfig(channels=(4, 8, 16), convs_per_block=2, head="gap", dropout=0.1, batchnorm=False))
    assert gap(x).shape == (5, 10) and len(gap.conv_layers()) == 6
    assert as_images(np.zeros((2, 784))).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("bad", [dict(kernel_size=4), dict(head="max"), dict(channels=()),
                                 dict(channels=(1,) * 6)])
def test_cnn_rejects_bad_config(bad):
    with pytest.raises(ValueError):
        CNN(CNNConfig(**bad))


# ---------------------------------------------------------------- augmentation
def test_augment_is_seeded_and_keeps_shape(images):
    a = augment(images, torch.Generator().manual_seed(3))
    b = augment(images, torch.Generator().manual_seed(3))
    c = augment(images, torch.Generator().manual_seed(4))
    assert a.shape == images.shape and torch.equal(a, b) and not torch.equal(a, c)
    flat = augment(images.flatten(1), torch.Generator().manual_seed(3))
    assert flat.shape == (3, 784) and torch.allclose(flat, a.flatten(1))


def test_identity_affine_is_identity(images):
    same = random_affine(0, 0, (1.0, 1.0))(images, torch.Generator().manual_seed(0))
    assert torch.allclose(same, images, atol=1e-5)


def test_shift_moves_content_by_expected_pixels():
    img = torch.zeros(1, 1, 28, 28)
    img[0, 0, 10:18, 10:18] = 1.0
    moved = apply_affine(img, torch.tensor([[[1.0, 0.0, 2 / 14], [0.0, 1.0, 0.0]]]))  # 2 pixels
    cols = torch.arange(28.0)
    centre = lambda im: float((im[0, 0].sum(0) * cols).sum() / im.sum())
    assert centre(moved) - centre(img) == pytest.approx(-2.0, abs=1e-4)  # reads from x + t: content moves left


def test_affine_ranges_respected():
    th = affine_matrices(2000, torch.Generator().manual_seed(0), max_rotate=10, max_shift=0.1, scale=(0.9, 1.1))
    assert th[:, :, 2].abs().max() <= 0.1
    det = th[:, 0, 0] * th[:, 1, 1] - th[:, 0, 1] * th[:, 1, 0]  # = 1 / zoom²
    assert float(det.min()) >= 1 / 1.1 ** 2 - 1e-5 and float(det.max()) <= 1 / 0.9 ** 2 + 1e-5
    with pytest.raises(ValueError):
        random_affine(max_rotate=-1)


def test_augment_plugs_into_fit():
    from kit.train import fit
    torch.manual_seed(0)
    X, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    h = []
    for _ in range(2):
        torch.manual_seed(0)
        h.append(fit(CNN(CNNConfig(channels=(2,))), (X, y), loss_fn=torch.nn.functional.cross_entropy, epochs=1,
                     batch_size=16, augment=augment, progress=False, seed=0, device="cpu")["train_loss"][0])
    assert np.isfinite(h[0]) and h[0] == h[1]  # same seed, same augmented batches


# ---------------------------------------------------------------- IDX files and datasets
def _idx_bytes(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, arr.ndim]) + np.array(arr.shape, dtype=">u4").tobytes()
    return head + arr.astype(np.uint8).tobytes()


def test_read_idx_roundtrip_and_rejects_garbage(tmp_path):
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / "x-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(_idx_bytes(imgs)))
    assert np.array_equal(read_idx(p), imgs)
    raw = tmp_path / "y-idx1-ubyte"
    raw.write_bytes(_idx_bytes(np.array([3, 1, 4])))
    assert read_idx(raw).tolist() == [3, 1, 4]
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x0d\x01" + b"\x00" * 8))  # float IDX: not ours
    with pytest.raises(ValueError, match="not an IDX"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(_idx_bytes(imgs)[:-1])
    with pytest.raises(ValueError, match="header says"):
        read_idx(short)


def _fake_idx_dataset(tmp_path, monkeypatch, name="fake_fashion"):
    """Four tiny IDX files: 'upstream' gzip copies with one sha256, 'Debian' re-compressed copies (other
    gzip header, so other bytes and sha256) in a hyphenated mirror folder, like /usr/share/datasets."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (20, 28, 28)), rng.integers(0, 10, 20),
              rng.integers(0, 256, (10, 28, 28)), rng.integers(0, 10, 10)]
    files = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz"]
    upstream = [gzip.compress(_idx_bytes(a), mtime=0) for a in arrays]
    debian = [gzip.compress(_idx_bytes(a), compresslevel=1, mtime=1_591_347_949) for a in arrays]
    mirror = tmp_path / "mirror" / name.replace("_", "-")
    mirror.mkdir(parents=True)
    for f, b in zip(files, debian):
        (mirror / f).write_bytes(b)
    monkeypatch.setenv("KIT_DATA_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setenv("KIT_DATA_DIR", str(tmp_path / "cache"))
    from kit.data.vision_datasets import _idx_loader
    monkeypatch.setitem(data.REGISTRY, name, _IdxDataset(  # removed from the registry after the test
        name=name, description="test", embedded=lambda: None, embedded_note="none",
        sources=[Source(f"http://127.0.0.1:9/{f}", hashlib.sha256(b).hexdigest(), f) for f, b in zip(files, upstream)],
        variants=tuple(((len(b), hashlib.sha256(b).hexdigest()),) for b in debian),
        load_real=_idx_loader("fake", [str(i) for i in range(10)])))
    return arrays, debian


def test_debian_variant_in_hyphenated_mirror_is_verified_and_used(tmp_path, monkeypatch):
    arrays, debian = _fake_idx_dataset(tmp_path, monkeypatch)
    d = data.load("fake_fashion")
    assert "mirror" in d.source and d.test_start == 20 and d.X.shape == (30, 784)
    assert np.allclose(d.X[:20] * 255, arrays[0].reshape(20, -1)) and d.y[20:].tolist() == arrays[3].tolist()
    assert "cache" in data.load("fake_fashion").source  # the cached Debian copy is recognised too


def test_corrupt_variant_is_rejected(tmp_path, monkeypatch):
    arrays, debian = _fake_idx_dataset(tmp_path, monkeypatch, name="fake_fashion2")
    f = tmp_path / "mirror" / "fake-fashion2" / "train-labels-idx1-ubyte.gz"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, other bytes
    f.write_bytes(bytes(raw))
    with pytest.raises(data.ChecksumError):
        data.load("fake_fashion2")


def test_registered_vision_datasets_have_real_sources():
    for name in ("mnist", "fashion_mnist"):
        ds = data.REGISTRY[name]
        assert len(ds._sources) == 4 and all(s.url.startswith("https://") and len(s.sha256) == 64 for s in ds._sources)


def test_fashion_offline_falls_back_to_digits_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KIT_OFFLINE", "1")
    monkeypatch.delenv("KIT_DATA_MIRROR", raising=False)
    monkeypatch.setenv("KIT_DATA_DIR", str(tmp_path))
    d = data.load("fashion_mnist")
    assert isinstance(d, Images) and d.X.shape == (5000, 784) and d.test_start is None
    assert "NOT Fashion-MNIST" in d.source and "NOT Fashion-MNIST" in capsys.readouterr().out


def test_vision_split_fixed_stratified_and_official():
    y = np.repeat(np.arange(10), 500)
    d = Images(np.zeros((5000, 1), np.float32), y, ["x"], "digit", source="")
    tr, va, te = vision_split(d, seed=0, test_size=1000, val_size=500)
    assert (len(tr), len(va), len(te)) == (3500, 500, 1000)
    assert not (set(tr) & set(te)) and not (set(va) & set(te)) and not (set(tr) & set(va))
    assert np.bincount(y[te]).tolist() == [100] * 10
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), vision_split(d, seed=0)))
    tr2, _, _ = vision_split(d, seed=0, max_train=1000)
    assert len(tr2) == 1000 and set(tr2) <= set(tr)
    official = Images(np.zeros((700, 1), np.float32), np.tile(np.arange(10), 70), ["x"], "digit", source="",
                      test_start=600)
    tr, va, te = vision_split(official, test_size=50, val_size=100)
    assert te.tolist() == list(range(600, 650)) and tr.max() < 600 and va.max() < 600


# ---------------------------------------------------------------- explanation methods
def test_saliency_equals_autograd_gradient(model, images):
    g = E.saliency(model, images, target=3)
    x = images.clone().requires_grad_(True)
    model(x)[:, 3].sum().backward()
    assert torch.allclose(g, x.grad, atol=1e-7)
    pred = model(images).argmax(1)
    assert torch.allclose(E.saliency(model, images), E.saliency(model, images, pred))


def test_explain_restores_training_mode_and_leaves_param_grads(model, images):
    model.train()
    E.saliency(model, images)
    E.grad_cam(model, images)
    assert model.training and all(p.grad is None for p in model.parameters())


def test_smoothgrad_seeded_and_reduces_to_saliency(model, images):
    a = E.smoothgrad(model, images, n=4, generator=torch.Generator().manual_seed(0))
    b = E.smoothgrad(model, images, n=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert torch.allclose(E.smoothgrad(model, images, target=2, n=2, sigma=0.0), E.saliency(model, images, 2),
                          atol=1e-6)


IG_TOLERANCE = 0.02  # |Σ attributions − (f(x) − f(x₀))| ≤ 2 % of |f(x) − f(x₀)| + 1e-3 with 128 steps


def test_integrated_gradients_completeness(model, images):
    attr = E.integrated_gradients(model, images, steps=128)
    assert attr.shape == images.shape
    gap = E.completeness_gap(model, images, attr)
    with torch.no_grad():
        t = model(images).argmax(1)
        diff = model(images).gather(1, t[:, None])[:, 0] - model(torch.zeros_like(images)).gather(1, t[:, None])[:, 0]
    assert torch.all(gap.abs() <= IG_TOLERANCE * diff.abs() + 1e-3), (gap, diff)
    coarse = E.completeness_gap(model, images, E.integrated_gradients(model, images, steps=4))
    assert gap.abs().mean() < coarse.abs().mean()  # more steps, smaller quadrature error


def test_integrated_gradients_exact_for_linear_model():
    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).double()
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    attr = E.integrated_gradients(lin, x, target=1, steps=3)
    assert torch.allclose(attr, lin[1].weight[1].view(1, 1, 4, 4) * x)  # w·x exactly


def test_grad_cam_shape_and_non_negative(model, images):
    cam = E.grad_cam(model, images)
    assert cam.shape == (3, 28, 28) and torch.all(cam >= 0) and torch.isfinite(cam).all()
    coarse = E.grad_cam(model, images, upsample=False)
    assert coarse.shape == (3, 14, 14) and torch.all(coarse >= 0)
    first = E.grad_cam(model, images, layer=model.conv_layers()[0], upsample=False)
    assert first.shape == (3, 28, 28)


def test_feature_maps_one_per_conv_layer(model, images):
    maps = E.feature_maps(model, images)
    assert [m.shape for m in maps] == [(3, 4, 28, 28), (3, 8, 14, 14)]


def test_attribution_maps_and_randomization_check(model, images):
    maps = E.attribution_maps(model, images, seed=0, smoothgrad={"n": 3}, integrated_gradients={"steps": 8})
    assert set(maps) == set(E.METHODS) and all(m.shape == (3, 28, 28) for m in maps.values())
    rnd = E.randomized_copy(model, seed=1)
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), rnd.parameters()))
    same = E.spearman(maps["saliency"], maps["saliency"])
    assert np.allclose(same, 1.0)
    other = E.spearman(maps["saliency"], E.attribution_maps(rnd, images, methods=["saliency"])["saliency"])
    assert np.all(other < 0.99)
    assert np.isnan(E.spearman(torch.zeros(1, 4), torch.rand(1, 4))[0])
    a, b = torch.tensor([[0.0, 0.0, 0.0, 1.0, 2.0, 3.0]]), torch.tensor([[0.0, 0.0, 0.0, 3.0, 2.0, 1.0]])
    assert E.spearman(a, b)[0] > 0.5  # the shared zeros dominate the ranking …
    assert E.spearman(a, b, mask=a > 0)[0] == pytest.approx(-1.0)  # … the ink pixels disagree completely


def test_confident_mistakes_order():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95], [0.3, 0.7]])
    y = torch.tensor([1, 1, 1, 0, 0])
    assert E.confident_mistakes(probs, y, k=3).tolist() == [3, 0, 4]
    assert E.confident_mistakes(probs, torch.tensor([0, 1, 0, 1, 1]), k=3).tolist() == []


# ---------------------------------------------------------------- figures
def test_vision_figures_build(model, images):
    import kit.viz.vision as vv
    maps = E.attribution_maps(model, images, methods=["saliency", "grad_cam"])
    figs = [vv.image_grid(images, titles=["a", "b", "c"], cols=2), vv.filters(model.conv_layers()[0].weight),
            vv.feature_maps([m[0] for m in E.feature_maps(model, images[:1])], image=images[0]),
            vv.overlay(images[0], maps["saliency"][0]), vv.explanation_grid(images, maps),
            vv.probabilities(torch.softmax(model(images), 1)[0], true=1),
            vv.image_and_probabilities(images[0], torch.full((10,), 0.1), true=2)]
    for f in figs:
        assert f.to_plotly_json()["data"]
