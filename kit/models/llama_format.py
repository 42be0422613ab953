"""Llama checkpoints → kit's GPT: GGUF files (llama.cpp's format, quantised or not) and Hugging Face Llama folders.

A Llama is kit's :class:`~kit.models.gpt.GPT` with other options: ``norm="rmsnorm"``, ``pos="rope"`` (base
``rope_theta``), ``activation="swiglu"`` (``n_inner`` wide), grouped-query attention (``n_kv_head``), no biases.
The weights map one to one, except that kit fuses q, k, v into ``c_attn`` and gate, up into ``c_fc``:

==================================  ===================================  =====================
GGUF (``blk.i.`` …)                 Hugging Face (``model.layers.i.`` …)  kit (``blocks.i.`` …)
==================================  ===================================  =====================
``token_embd``                      ``model.embed_tokens``               ``wte``
``attn_norm``                       ``input_layernorm``                  ``ln_1``
``attn_q``, ``attn_k``, ``attn_v``  ``self_attn.{q,k,v}_proj``           ``attn.c_attn`` (rows)
``attn_output``                     ``self_attn.o_proj``                 ``attn.c_proj``
``ffn_norm``                        ``post_attention_layernorm``         ``ln_2``
``ffn_gate``, ``ffn_up``            ``mlp.{gate,up}_proj``               ``mlp.c_fc`` (rows)
``ffn_down``                        ``mlp.down_proj``                    ``mlp.c_proj``
``output_norm``                     ``model.norm``                       ``ln_f``
``output`` (absent: tied)           ``lm_head``                          ``lm_head``
==================================  ===================================  =====================

llama.cpp's converter reorders the rows of ``attn_q`` and ``attn_k`` within each head so that rotary pairs are
neighbours (dimensions 2i, 2i+1); kit's :func:`~kit.models.gpt.rotate` pairs i with i + head_size/2, as Hugging
Face does, so the loader undoes that permutation (as ``transformers``' GGUF loader does). Quantised tensors are
dequantised one at a time with ``gguf.quants.dequantize`` into the model's preallocated float32 (or ``dtype``)
weights: no second copy of the model. ``tests/test_llama_format.py`` checks logits against ``transformers``.
"""
from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from kit.data.llm_files import SHIPPED, resolve_llm
from kit.models.gpt import GPT, GPTConfig

__all__ = ["load_gguf", "load_llama_folder", "gguf_summary", "gguf_config", "checkpoint_kind", "SUPPORTED_TYPES",
           "unpermute_rotary"]

SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
                   "Q6_K")
# per block: GGUF name → (kit name, which slice of a fused matrix: None = the whole weight)
_GGUF_BLOCK = {"attn_norm": ("ln_1.weight", None), "ffn_norm": ("ln_2.weight", None),
               "attn_q": ("attn.c_attn.weight", 0), "attn_k": ("attn.c_attn.weight", 1),
               "attn_v": ("attn.c_attn.weight", 2), "attn_output": ("attn.c_proj.weight", None),
               "ffn_gate": ("mlp.c_fc.weight", 0), "ffn_up": ("mlp.c_fc.weight", 1),
               "ffn_down": ("mlp.c_proj.weight", None)}
_GGUF_TOP = {"token_embd.weight": "wte.weight", "output_norm.weight": "ln_f.weight", "output.weight": "lm_head.weight"}
_HF_BLOCK = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
_HF_TOP = {"model.embed_tokens.weight": "wte.weight", "model.norm.weight": "ln_f.weight",
           "lm_head.weight": "lm_head.weight"}


def checkpoint_kind(name_or_path) -> str:
    """``"gguf"`` (a shipped name or a ``.gguf`` path), ``"llama"`` (a folder whose config.json says llama), else
    ``"gpt2"`` (:mod:`kit.models.gpt2_format` decides)."""
    if isinstance(name_or_path, str) and name_or_path in SHIPPED:
        return "gguf"
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() == ".gguf":
        return "gguf"
    if path.is_dir() and (path / "config.json").is_file():
        try:
            if json.loads((path / "config.json").read_text()).get("model_type") == "llama":
                return "llama"
        except (OSError, ValueError):
            pass
    return "gpt2"


# ---------------------------------------------------------------- GGUF
def _reader(path: Path):
    """``gguf.GGUFReader`` on a plain ndarray view of the file: the same fields and tensors, ~3× faster to parse
    (numpy's memmap subclass adds Python work to each of the vocabulary's ~100 k small reads)."""
    import gguf

    class Reader(gguf.GGUFReader):
        @property
        def data(self):
            return self._data

        @data.setter
        def data(self, value):
            self._data = np.asarray(value)

    return Reader(path)


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def gguf_config(reader, path: Path | str = "") -> GPTConfig:
    """kit's :class:`GPTConfig` from a GGUF file's ``llama.*`` metadata (one-sentence ``ValueError`` otherwise)."""
    name = Path(path).name
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"{name}: GGUF architecture {arch!r} is not supported; kit reads the 'llama' architecture "
                         f"only (Llama, SmolLM, TinyLlama, Mistral-style models)")
    g = lambda key, default=None: _field(reader, f"llama.{key}", default)  # noqa: E731
    n_embd, n_head = int(g("embedding_length")), int(g("attention.head_count"))
    rope_dim = g("rope.dimension_count", n_embd // n_head)
    if n_embd % n_head or rope_dim != n_embd // n_head:
        raise ValueError(f"{name}: kit's GPT needs head size = n_embd / n_head = rotary width, got n_embd {n_embd}, "
                         f"{n_head} heads and rope.dimension_count {rope_dim}")
    scaling = g("rope.scaling.type", "none")
    if scaling not in ("none", None) or any(t.name == "rope_freqs.weight" for t in reader.tensors):
        raise ValueError(f"{name}: rotary scaling ({scaling}) is not supported; kit implements plain RoPE")
    emb = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    vocab = g("vocab_size") or (int(emb.shape[1]) if emb is not None else len(tokens.data) if tokens else None)
    return GPTConfig(vocab_size=int(vocab), block_size=int(g("context_length", 2048)), n_layer=int(g("block_count")),
                     n_head=n_head, n_embd=n_embd, n_kv_head=int(g("attention.head_count_kv", n_head)),
                     n_inner=int(g("feed_forward_length")), rope_theta=float(g("rope.freq_base", 10_000.0)),
                     ln_eps=float(g("attention.layer_norm_rms_epsilon", 1e-5)), norm="rmsnorm", pos="rope",
                     activation="swiglu", bias=False, dropout=0.0,
                     tie_weights=all(t.name != "output.weight" for t in reader.tensors))


def unpermute_rotary(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Undo llama.cpp's row order of a Q or K weight ``(n_head·hs, in)``: within each head, rows ``(2i, 2i+1)`` →
    ``(i, i + hs/2)`` (``transformers``' ``reverse_permute``)."""
    out, *rest = w.shape
    return w.reshape(n_head, out // n_head // 2, 2, *rest).transpose(1, 2).reshape(w.shape)


class _Weights:
    """kit's weights for ``cfg``, allocated on first use and filled tensor by tensor (slices of the fused ones)."""

    def __init__(self, cfg: GPTConfig, dtype: torch.dtype, where: str):
        with torch.device("meta"):          # no memory, no random init
            self.model = GPT(cfg)
        self.shapes = {k: v.shape for k, v in self.model.state_dict().items()
                       if not (cfg.tie_weights and k == "lm_head.weight")}
        hs, n_kv = cfg.n_embd // cfg.n_head, cfg.n_kv_head or cfg.n_head
        self.parts = {"attn.c_attn.weight": (cfg.n_head * hs, n_kv * hs, n_kv * hs),
                      "mlp.c_fc.weight": (cfg.n_inner, cfg.n_inner)}
        self.cfg, self.dtype, self.where, self.state = cfg, dtype, where, {}

    def put(self, name: str, part: int | None, w: torch.Tensor, owned: bool = False, heads: int = 0) -> None:
        """Store ``w`` as weight ``name``, or copy it into rows ``part`` of a fused matrix. ``owned``: ``w`` is a
        fresh tensor that may be kept as is; ``heads``: undo llama.cpp's rotary row order (that many heads)."""
        if name not in self.shapes:
            raise ValueError(f"{self.where}: tensor {name} does not fit a {self.cfg.n_layer}-layer Llama")
        shape = self.shapes[name]
        if part is not None:
            sizes = self.parts[name.split(".", 2)[2]]
            shape = (sizes[part], *shape[1:])
        if tuple(w.shape) != tuple(shape):
            raise ValueError(f"{self.where}: {name} should have shape {tuple(shape)} by the config, "
                             f"got {tuple(w.shape)}")
        if part is None and owned and not heads and w.dtype == self.dtype and w.data_ptr() % 64 == 0:
            self.state[name] = w    # a fresh, cache-line-aligned tensor: kept (numpy's 16-byte alignment slows matmuls)
            return
        if name not in self.state:
            self.state[name] = torch.empty(self.shapes[name], dtype=self.dtype)
        dst = self.state[name]
        if part is not None:
            dst = dst[sum(sizes[:part]):sum(sizes[:part + 1])]
        if heads:   # one strided copy: (head, pair i, half) → (head, half, i)
            out, *rest = w.shape
            dst.view(heads, 2, out // heads // 2, *rest).copy_(w.view(heads, out // heads // 2, 2, *rest).transpose(1, 2))
        else:
            dst.copy_(w)

    def model_on(self, device) -> GPT:
        """The filled model on ``device``, in eval mode."""
        missing = sorted(set(self.shapes) - set(self.state))
        if missing:
            raise ValueError(f"{self.where}: weights missing for {', '.join(missing[:4])}")
        model = self.model
        model.load_state_dict(self.state, strict=False, assign=True)
        if self.cfg.tie_weights:
            model.lm_head.weight = model.wte.weight
        self.state = {}
        model.share_rope(device or "cpu")   # one table on the target device: .to() below keeps it shared
        return model.to(device or "cpu").eval()


def load_gguf(path: str | os.PathLike, device=None, dtype: torch.dtype = torch.float32) -> GPT:
    """kit's :class:`GPT` with the weights of a ``llama`` GGUF file (a path, or a shipped name such as
    ``"SmolLM2-135M-Instruct"``), dequantised to ``dtype``, in eval mode."""
    from gguf.quants import dequantize
    path = resolve_llm(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; load_gguf needs a .gguf file")
    reader = _reader(path)
    cfg = gguf_config(reader, path)
    bad = sorted({t.tensor_type.name for t in reader.tensors} - set(SUPPORTED_TYPES))
    if bad:
        raise ValueError(f"{path.name}: tensor type {', '.join(bad)} is not supported; kit reads "
                         f"{', '.join(SUPPORTED_TYPES)}")
    weights = _Weights(cfg, dtype, path.name)
    n_kv = cfg.n_kv_head or cfg.n_head
    for t in reader.tensors:
        kind = ""
        if t.name in _GGUF_TOP:
            name, part = _GGUF_TOP[t.name], None
        else:
            blk, i, kind, suffix = (t.name.split(".") + ["", "", ""])[:4]
            if blk != "blk" or kind not in _GGUF_BLOCK or suffix != "weight":
                raise ValueError(f"{path.name}: tensor {t.name} is not part of a Llama that kit knows")
            name, part = _GGUF_BLOCK[kind]
            name = f"blocks.{i}.{name}"
        a = dequantize(t.data, t.tensor_type)
        owned = a.flags.writeable   # a new array (quantised, F16); F32 is a view of the read-only file: copied
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # a read-only view is only read from
            w = torch.from_numpy(a)
        heads = (cfg.n_head if kind == "attn_q" else n_kv) if kind in ("attn_q", "attn_k") else 0
        weights.put(name, part, w, owned=owned, heads=heads)
        del a, w
    return weights.model_on(device)


def gguf_summary(path: str | os.PathLike) -> dict:
    """What a GGUF file holds, for a lesson's table: file size, architecture, kit's config, tensors per type,
    parameters (by tensor shapes), bits per weight, special tokens."""
    path = resolve_llm(path)
    reader = _reader(path)
    cfg = gguf_config(reader, path)
    n_params = sum(int(np.prod(t.shape)) for t in reader.tensors)
    size = path.stat().st_size
    by_type = Counter(t.tensor_type.name for t in reader.tensors)
    params_by_type = Counter()
    for t in reader.tensors:
        params_by_type[t.tensor_type.name] += int(np.prod(t.shape))
    return {"file": path.name, "file_bytes": size, "architecture": "llama", "name": _field(reader, "general.name"),
            "config": cfg, "tensors": len(reader.tensors), "tensors_by_type": dict(by_type),
            "parameters_by_type": dict(params_by_type), "parameters": n_params,
            "bits_per_weight": round(8 * sum(int(t.n_bytes) for t in reader.tensors) / n_params, 2),
            "float32_bytes": 4 * n_params, "bos_token_id": _field(reader, "tokenizer.ggml.bos_token_id"),
            "eos_token_id": _field(reader, "tokenizer.ggml.eos_token_id")}


# ---------------------------------------------------------------- Hugging Face folder
def _hf_config(hf: dict, where: str) -> GPTConfig:
    if hf.get("model_type") != "llama":
        raise ValueError(f"{where}: model_type is {hf.get('model_type')!r}, not 'llama'")
    n_embd, n_head = hf["hidden_size"], hf["num_attention_heads"]
    rope = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
    problems = [k for k in ("attention_bias", "mlp_bias") if hf.get(k)]
    if hf.get("head_dim") not in (None, n_embd // n_head):
        problems.append(f"head_dim {hf['head_dim']} ≠ hidden_size / heads")
    if rope_type != "default":
        problems.append(f"rope type {rope_type!r}")
    if hf.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act {hf['hidden_act']!r}")
    if problems:
        raise ValueError(f"{where}: not supported by kit's GPT: {', '.join(problems)}")
    return GPTConfig(vocab_size=hf["vocab_size"], block_size=hf.get("max_position_embeddings", 2048),
                     n_layer=hf["num_hidden_layers"], n_head=n_head, n_embd=n_embd,
                     n_kv_head=hf.get("num_key_value_heads") or n_head, n_inner=hf["intermediate_size"],
                     rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0))),
                     ln_eps=hf.get("rms_norm_eps", 1e-6), norm="rmsnorm", pos="rope", activation="swiglu",
                     bias=False, dropout=0.0, tie_weights=bool(hf.get("tie_word_embeddings", False)))


def load_llama_folder(folder: str | os.PathLike, device=None, dtype: torch.dtype = torch.float32) -> GPT:
    """kit's :class:`GPT` from a Hugging Face Llama folder (``config.json`` + ``model.safetensors``, or shards with
    ``model.safetensors.index.json``), read tensor by tensor, in eval mode."""
    from safetensors import safe_open
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: not a Hugging Face checkpoint folder")
    cfg = _hf_config(json.loads((folder / "config.json").read_text()), folder.name)
    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else \
        ["model.safetensors"]
    if not all((folder / f).is_file() for f in files):
        raise FileNotFoundError(f"{folder} has no model.safetensors (kit reads safetensors Llama checkpoints)")
    weights = _Weights(cfg, dtype, folder.name)
    for f in files:
        with safe_open(str(folder / f), framework="pt") as sf:
            for key in sf.keys():
                if key in _HF_TOP:
                    if key == "lm_head.weight" and cfg.tie_weights:
                        continue
                    name, part = _HF_TOP[key], None
                else:
                    parts = key.split(".")
                    sub = ".".join(parts[3:-1])
                    if parts[:2] != ["model", "layers"] or sub not in _HF_BLOCK or parts[-1] != "weight":
                        raise ValueError(f"{folder.name}: tensor {key} is not part of a Llama that kit knows")
                    name, part = _GGUF_BLOCK[_HF_BLOCK[sub]]
                    name = f"blocks.{parts[2]}.{name}"
                weights.put(name, part, sf.get_tensor(key), owned=True)
    return weights.model_on(device)
