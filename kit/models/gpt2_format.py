"""Hugging Face GPT-2 checkpoints ⇄ kit's GPT: load ``config.json`` + weights, and save in the same format.

GPT-2 differs from kit's default GPT in four details the loader sets from ``config.json``: biases in every
Linear and LayerNorm, GELU's tanh approximation (``"gelu_new"``), LayerNorm ε = 1e-5, and Hugging Face's
``Conv1D`` layers, which store weights as (in, out) — the transpose of ``nn.Linear``'s. Weights come from
``model.safetensors``, or ``pytorch_model.bin`` read with ``weights_only=True``. A hub name (``"gpt2"``) is
looked up in the Hugging Face cache first and downloaded only when online; the real 124 M GPT-2's file is
checked against its published sha256. ``tests/test_gpt2_format.py`` compares logits with ``transformers``'
``GPT2LMHeadModel`` on small random checkpoints that ``transformers`` writes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from kit.data.fetch import sha256_file
from kit.models.bert_format import read_state
from kit.models.gpt import GPT, GPTConfig

__all__ = ["load_gpt2", "save_gpt2", "KNOWN_SHA256", "CONV1D_WEIGHTS", "resolve"]

# sha256 of model.safetensors at openai-community/gpt2 revision 607a30d783dfa663caf39e06633721c8d4cfcd7e
KNOWN_SHA256 = {"gpt2": "248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707",
                "openai-community/gpt2": "248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707"}
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_FILES = ("config.json", "model.safetensors", "vocab.json", "merges.txt")


def resolve(name_or_dir: str | os.PathLike) -> Path:
    """A local folder as is; a hub name from the Hugging Face cache, else downloaded (one clear error offline)."""
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    name = str(name_or_dir)
    if path.suffix or "/" in name and Path(name).parent.exists():
        raise FileNotFoundError(f"no checkpoint folder {name}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - transformers brings it
        raise FileNotFoundError(f"{name!r} is not a folder, and huggingface_hub is not installed to fetch it") from e
    try:
        return Path(snapshot_download(name, allow_patterns=list(_FILES), local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the cache: try the network once
        pass
    try:
        return Path(snapshot_download(name, allow_patterns=list(_FILES)))
    except Exception as e:  # noqa: BLE001 - offline, unknown name, ...: one message
        raise FileNotFoundError(f"could not get the checkpoint {name!r}: it is not in the Hugging Face cache and "
                                f"could not be downloaded ({type(e).__name__}). Pass a folder with config.json and "
                                f"model.safetensors instead.") from None


def config_from_hf(hf: dict) -> GPTConfig:
    """kit's :class:`GPTConfig` for a Hugging Face GPT-2 ``config.json``."""
    if hf.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"not a GPT-2 checkpoint: model_type is {hf.get('model_type')!r}")
    n_embd = hf.get("n_embd", 768)
    if hf.get("n_inner") not in (None, 4 * n_embd):
        raise ValueError(f"n_inner={hf['n_inner']} is not 4·n_embd: kit's GPT has a 4× MLP")
    act = hf.get("activation_function", "gelu_new")
    acts = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
    if act not in acts:
        raise ValueError(f"activation_function {act!r} is not supported (one of {sorted(acts)})")
    return GPTConfig(vocab_size=hf.get("vocab_size", 50257), block_size=hf.get("n_positions", 1024),
                     n_layer=hf.get("n_layer", 12), n_head=hf.get("n_head", 12), n_embd=n_embd, dropout=0.0,
                     bias=True, activation=acts[act], ln_eps=hf.get("layer_norm_epsilon", 1e-5))


def load_gpt2(name_or_dir: str | os.PathLike, device=None) -> GPT:
    """kit's :class:`GPT` with the weights of a Hugging Face GPT-2 checkpoint (in eval mode)."""
    folder = resolve(name_or_dir)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder} has no config.json: not a Hugging Face checkpoint folder")
    known = KNOWN_SHA256.get(str(name_or_dir))
    if known and (folder / "model.safetensors").exists() and sha256_file(folder / "model.safetensors") != known:
        raise ValueError(f"{folder / 'model.safetensors'} does not match the published sha256 of {name_or_dir!r}: "
                         "delete it from the Hugging Face cache and download it again")
    cfg = config_from_hf(json.loads((folder / "config.json").read_text()))
    state = {}
    for k, v in read_state(folder).items():   # Hugging Face's names and layout → kit's (written out here only)
        k = k.removeprefix("transformer.")
        if k.startswith("lm_head.") or k.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # tied to wte; causal-mask buffers
        name = "blocks." + k[len("h."):] if k.startswith("h.") else k
        state[name] = v.t().contiguous() if name.endswith(CONV1D_WEIGHTS) else v
    model = GPT(cfg)
    expected = {k for k in model.state_dict() if k != "lm_head.weight"}
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise ValueError(f"{folder}: the checkpoint does not fit GPT-2's layout (missing {sorted(missing)[:4]}, "
                         f"unexpected {sorted(unexpected)[:4]})")
    for k, v in state.items():
        if model.state_dict()[k].shape != v.shape:
            raise ValueError(f"{folder}: {k} has shape {tuple(v.shape)}, config.json implies "
                             f"{tuple(model.state_dict()[k].shape)}")
    model.load_state_dict(state, strict=False)
    model.lm_head.weight = model.wte.weight  # still tied
    return model.to(device or "cpu").eval()


def save_gpt2(model: GPT, folder: str | os.PathLike, eos_token_id: int | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` in Hugging Face's GPT-2 layout (biases as zeros if absent).

    ``eos_token_id``: the vocabulary's end-of-text token, written as GPT-2's ``bos_token_id`` and ``eos_token_id``
    (GPT-2 uses one token for both). ``None`` writes null: otherwise ``transformers`` assumes GPT-2's 50256, which
    a smaller vocabulary does not have."""
    from safetensors.torch import save_file
    cfg = model.cfg
    if eos_token_id is not None and not (isinstance(eos_token_id, int) and 0 <= eos_token_id < cfg.vocab_size):
        raise ValueError(f"eos_token_id must be a token id in [0, {cfg.vocab_size}) or None, got {eos_token_id!r}")
    if cfg.pos != "learned" or cfg.activation == "relu2" or cfg.qk_norm or not cfg.tie_weights:
        raise ValueError(f"GPT-2's format holds learned positions, GELU, no QK-norm and a tied output layer; this model "
                         f"has pos={cfg.pos!r}, activation={cfg.activation!r}, qk_norm={cfg.qk_norm}, "
                         f"tie_weights={cfg.tie_weights}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue
        name = "h." + k[len("blocks."):] if k.startswith("blocks.") else k
        state[name] = (v.t() if k.endswith(CONV1D_WEIGHTS) else v).detach().to("cpu", torch.float32).contiguous()
    if not cfg.bias:  # GPT-2's layout has every bias: zeros change nothing
        for k, v in list(state.items()):
            if k.endswith(".weight") and k.removesuffix(".weight") + ".bias" not in state and k not in ("wte.weight", "wpe.weight"):
                out = v.shape[-1] if k.endswith(CONV1D_WEIGHTS) else v.shape[0]
                state[k.removesuffix(".weight") + ".bias"] = torch.zeros(out)
    hf = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": cfg.vocab_size,
          "n_positions": cfg.block_size, "n_ctx": cfg.block_size, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer,
          "n_head": cfg.n_head, "n_inner": None, "layer_norm_epsilon": cfg.ln_eps,
          "activation_function": "gelu_new" if cfg.activation == "gelu_tanh" else "gelu",
          "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "tie_word_embeddings": True,
          "bos_token_id": eos_token_id, "eos_token_id": eos_token_id}
    tmp = folder / ".model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, folder / "model.safetensors")
    tmp = folder / ".config.json.tmp"   # never half-written
    tmp.write_text(json.dumps(hf, indent=2))
    os.replace(tmp, folder / "config.json")
    return folder
