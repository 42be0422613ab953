"""Models, each a plain module or function set: linear, logistic, mlp (more in later lessons)."""
from kit.models import linear, logistic
from kit.models.mlp import MLP, MLPConfig, l1_penalty, n_params

__all__ = ["MLP", "MLPConfig", "l1_penalty", "linear", "logistic", "n_params"]
