"""Ratings data for recommenders: MovieLens (ml-latest-small) when online, a synthetic low-rank
generator with known true factors offline. Importing this module registers ``"movielens"``::

    import kit.data.ratings                       # registers the dataset
    r = kit.data.load("movielens")                # Ratings(users, items, ratings, …)

The synthetic ratings are ``r_ui = μ + b_u + b_i + p_u·q_i + noise`` with the true ``μ, b, P, Q`` kept in
``r.truth``, so a lesson can check how well a model recovers them.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from kit.data.fetch import DataError, Source
from kit.data.registry import Dataset, register

ML_SMALL_URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
# sha256 of the ml-latest-small snapshot with 100 836 ratings of 9 742 movies by 610 users (2018 release)
ML_SMALL_SHA256 = "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436"


@dataclass
class Ratings:
    """Explicit ratings as parallel arrays of 0-based ``users``, ``items`` and ``ratings``."""
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    n_users: int
    n_items: int
    source: str
    description: str = ""
    item_names: list[str] = field(default_factory=list)
    truth: dict | None = None   # synthetic only: mu, bu, bi, P, Q, noise

    def __len__(self):
        return len(self.ratings)

    def true_ratings(self, users=None, items=None) -> np.ndarray:
        """Noise-free ratings ``μ + b_u + b_i + p_u·q_i`` (synthetic data only); all pairs when no arguments."""
        if self.truth is None:
            raise DataError("true ratings exist only for the synthetic data")
        t = self.truth
        if users is None:
            return t["mu"] + t["bu"][:, None] + t["bi"][None, :] + t["P"] @ t["Q"].T
        users, items = np.asarray(users), np.asarray(items)
        return t["mu"] + t["bu"][users] + t["bi"][items] + np.einsum("nk,nk->n", t["P"][users], t["Q"][items])


def synthetic_ratings(n_users: int = 500, n_items: int = 300, rank: int = 4, per_user: int = 40,
                      noise: float = 0.5, selection: float = 1.0, seed: int = 0) -> Ratings:
    """Low-rank ratings with known truth: ``μ = 3``, user and item biases, rank-``rank`` factors whose
    products have standard deviation 0.8, Gaussian noise ``noise``. Each user rates about ``per_user``
    items (at least 10), chosen with probability ∝ popularity × exp(``selection`` · affinity), where the
    popularity is mildly Zipf-like and the affinity is the user's standardized true taste ``p_u·q_i/0.8`` —
    people mostly rate what they chose to watch (``selection=0``: missing at random). The ratings are on an
    open scale centred near 3.5 — neither rounded to stars nor clipped, so the data are exactly low-rank
    plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    sf = (0.64 / rank) ** 0.25                       # so that std(p·q) = 0.8
    P = rng.normal(0, sf, (n_users, rank))
    Q = rng.normal(0, sf, (n_items, rank))
    bu, bi, mu = rng.normal(0, 0.4, n_users), rng.normal(0, 0.5, n_items), 3.0
    pop = 1.0 / (np.arange(n_items) + 20.0) ** 0.7
    pop = pop[rng.permutation(n_items)]
    pop /= pop.sum()
    counts = np.clip(rng.geometric(1.0 / per_user, n_users), 10, n_items // 2)
    users = np.repeat(np.arange(n_users), counts)
    items = []
    for u, c in enumerate(counts):
        w = pop * np.exp(selection * (P[u] @ Q.T) / 0.8)
        items.append(rng.choice(n_items, size=c, replace=False, p=w / w.sum()))
    items = np.concatenate(items)
    truth = {"mu": mu, "bu": bu, "bi": bi, "P": P, "Q": Q, "noise": noise, "rank": rank, "selection": selection}
    clean = mu + bu[users] + bi[items] + np.einsum("nk,nk->n", P[users], Q[items])
    ratings = (clean + rng.normal(0, noise, len(users))).astype(np.float32)
    return Ratings(users.astype(np.int64), items.astype(np.int64), ratings, n_users, n_items, source="",
                   description=f"synthetic: {n_users} users × {n_items} items, rank {rank}, noise σ={noise}, "
                               f"{len(ratings):,} ratings on an open scale (not rounded or clipped)", item_names=[f"item {i}" for i in range(n_items)],
                   truth=truth)


def _safe_member(zf: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    """The member ``name``, after checking that no member of the archive could escape an extraction folder."""
    for info in zf.infolist():
        p = PurePosixPath(info.filename)
        if p.is_absolute() or ".." in p.parts or "\\" in info.filename or ":" in p.parts[0]:
            raise DataError(f"refusing unsafe archive member {info.filename!r}")
    try:
        return zf.getinfo(name)
    except KeyError as e:
        raise DataError(f"{name!r} is not in the archive") from e


def _movielens_real(paths) -> Ratings:
    """Read ratings.csv and movies.csv straight from the verified zip (nothing is extracted to disk)."""
    import pandas as pd
    with zipfile.ZipFile(paths[0]) as zf:
        with zf.open(_safe_member(zf, "ml-latest-small/ratings.csv")) as f:
            df = pd.read_csv(f)
        with zf.open(_safe_member(zf, "ml-latest-small/movies.csv")) as f:
            movies = pd.read_csv(f)
    uids, users = np.unique(df["userId"].to_numpy(), return_inverse=True)
    mids, items = np.unique(df["movieId"].to_numpy(), return_inverse=True)
    titles = dict(zip(movies["movieId"], movies["title"]))
    return Ratings(users.astype(np.int64), items.astype(np.int64), df["rating"].to_numpy(np.float32),
                   len(uids), len(mids), source="",
                   description=f"MovieLens ml-latest-small: {len(df):,} ratings (0.5–5 stars) by {len(uids)} users "
                               f"of {len(mids):,} movies",
                   item_names=[str(titles.get(m, m)) for m in mids])


register(Dataset(
    name="movielens",
    description="Movie ratings: MovieLens ml-latest-small when online, synthetic low-rank ratings offline",
    sources=[Source(ML_SMALL_URL, ML_SMALL_SHA256, "ml-latest-small.zip")],
    load_real=_movielens_real,
    embedded=synthetic_ratings,
    embedded_note="synthetic low-rank ratings with known true factors (500 users × 300 items, rank 4)",
    license="MovieLens: GroupLens terms (research use, cite Harper & Konstan 2015, no commercial use)",
))
