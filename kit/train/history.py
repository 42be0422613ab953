"""Per-epoch training history: a dict of equally long lists."""
from __future__ import annotations


class History:
    """``history["val_loss"]`` → list over epochs; ``history.last``/``best`` for summaries."""

    def __init__(self, data: dict[str, list] | None = None):
        self.data: dict[str, list] = {k: list(v) for k, v in (data or {}).items()}

    def log(self, row: dict) -> None:
        for k, v in row.items():
            self.data.setdefault(k, []).append(float(v))

    def __getitem__(self, key: str) -> list:
        return self.data[key]

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def __len__(self) -> int:
        return len(self.data.get("epoch", []))

    @property
    def last(self) -> dict:
        return {k: v[-1] for k, v in self.data.items() if v}

    def best(self, key: str = "val_loss", mode: str = "min") -> dict:
        vals = self.data[key]
        i = vals.index(min(vals) if mode == "min" else max(vals))
        return {k: v[i] for k, v in self.data.items()}

    def as_dict(self) -> dict[str, list]:
        return {k: list(v) for k, v in self.data.items()}

    def to_frame(self):
        import pandas as pd
        return pd.DataFrame(self.data)

    def __repr__(self) -> str:
        return f"History({len(self)} epochs, keys={list(self.data)})"
