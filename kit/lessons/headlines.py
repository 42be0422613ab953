"""Each lesson's headline: a one-line goal and the few metrics a teacher looks at, with their bars.

Declared here, keyed by lesson number, so that the notebooks stay plain (nothing to import or tag):
``LESSONS["04"]`` says lesson 04 is judged by ``test_acc`` ≥ 0.98. A bar is the goal of a run with the
**default** parameters, as the lesson or the README states it; where neither states one, it is the bar the
tests hold the smoke run to (``tests/bars/NN_name.py``), which a default run clears too. A bar may be

* a number: ``direction="higher"`` means value ≥ bar, ``"lower"`` value ≤ bar;
* ``True`` / ``False`` (or any value with ``direction="equal"``): the value must equal it;
* another metric of the same run, optionally shifted or scaled: ``"unigram_val_loss-0.5"``, ``"chance+0.2"``,
  ``"acc_teacher-0.03"``, ``"size_kb_fp32*0.4"``, ``"none_below_1e-3*2"`` (a name may hold ``-`` before a digit);
* ``None``: shown for information, no mark.

Every bar must be one a broken run misses — a uniform guess, chance accuracy, an untrained net, no improvement
over the baseline the run computes, NaN: ``tests/test_report_headlines.py`` judges each bar against such values.

:func:`judge` turns one headline and a run's metrics into the value, the bar and ✓ / ✗ — or "—" when the
metric (or the lesson's run) is missing, never an error. A non-finite value (NaN or ±inf, as a float or as the
string ``kit.save_metrics`` writes for it), or a bar whose metric is non-finite, is ✗: a run that diverged.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

MISSING = "—"


@dataclass(frozen=True)
class Headline:
    key: str                      # the metrics.json key
    label: str                    # what a person reads
    bar: float | bool | str | None = None
    direction: str = "higher"     # "higher" (≥ bar), "lower" (≤ bar) or "equal"
    unit: str = ""                # "%" shows a fraction as a percentage; others are appended as they are


@dataclass(frozen=True)
class LessonHeadline:
    number: str                   # "04"
    stem: str                     # "04_cnn_digits" (the notebook's name)
    title: str                    # used when the lesson's notebook is not there
    goal: str                     # one line
    metrics: tuple[Headline, ...] = field(default_factory=tuple)
    figure: str | None = None     # a word of the key figure's title; default: the last figure before the exercises


H = Headline
LESSONS: dict[str, LessonHeadline] = {l.number: l for l in [
    LessonHeadline("00", "00_setup", "Setup and a first gradient",
                   "Check the environment, pick a device, and verify a first gradient against finite differences.",
                   (H("grad_error", "autograd vs finite differences", 1e-8, "lower"),)),
    LessonHeadline("01", "01_linear_regression", "Linear regression",
                   "House prices three ways — closed form, gradient descent, autograd — that agree to 1e-4.",
                   (H("test_r2", "test R²", 0.9), H("max_weight_diff", "the three solutions' largest weight gap", 1e-4, "lower"))),
    LessonHeadline("02", "02_logistic_regression", "Logistic regression",
                   "Classify tumours; check the gradient p − y against autograd and finite differences.",
                   (H("test_acc", "test accuracy", 0.93, unit="%"),
                    H("grad_err_fd", "p − y vs finite differences", 1e-6, "lower")), figure="gradient descent"),
    LessonHeadline("03", "03_mlp_training", "MLP training and optimizers",
                   "An MLP on digits; SGD to AdamW written out and checked against torch.optim; regularizers compared.",
                   (H("test_acc", "test accuracy", 0.85, unit="%"),
                    H("l1_below_1e-3", "weights below 1e-3 under L1", "none_below_1e-3*2", unit="%"),
                    H("l1_exact_zero", "weights exactly zero under L1", None, "lower", unit="%")),
                   figure="validation loss by optimizer"),
    LessonHeadline("04", "04_cnn_digits", "A CNN on handwritten digits",
                   "A small augmented CNN reaching ≥ 98 % on 1 000 held-out MNIST digits in about a minute of CPU.",
                   (H("test_acc", "test accuracy", 0.98, unit="%"), H("test_f1", "test macro F1", None, unit="%")), figure="confusion matrix"),
    LessonHeadline("05", "05_evaluation", "Evaluating classifiers",
                   "Precision, recall, F1, ROC/PR; a threshold chosen on validation and the test set scored once.",
                   (H("roc_auc", "ROC AUC", 0.95), H("binary_f1", "test F1 at the validation threshold", 0.85),
                    H("tuning_on_test_optimism_f1", "optimism of tuning on test (F1)", None)), figure="as the threshold"),
    LessonHeadline("06", "06_explainability", "Explaining a CNN",
                   "Saliency, SmoothGrad, Grad-CAM and integrated gradients, and a sanity check of each.",
                   (H("test_acc", "test accuracy", 0.85, unit="%"),
                    H("ig_completeness_rel_gap", "integrated gradients' completeness gap", 0.05, "lower"),
                    H("sanity_spearman_saliency", "saliency: trained vs random weights (Spearman)", 0.6, "lower")), figure="what each method"),
    LessonHeadline("07", "07_rnn_language_model", "RNN and LSTM language models",
                   "Character-level RNN and LSTM that beat the unigram model; gradients vanishing and exploding through time.",
                   (H("val_loss_lstm", "LSTM validation loss (nats/char)", "unigram_val_loss-0.5", "lower"),
                    H("val_loss_rnn", "RNN validation loss (nats/char)", "unigram_val_loss-0.4", "lower"),
                    H("lstm_vs_torch", "kit's LSTM step vs nn.LSTM", 1e-12, "lower")), figure="validation loss"),
    LessonHeadline("08", "08_transformer", "Attention and the Transformer",
                   "Attention written out and checked against PyTorch; a Transformer classifier vs bag-of-words.",
                   (H("test_acc", "Transformer test accuracy", "chance+0.2", unit="%"),
                    H("bow_test_acc", "bag-of-words test accuracy", None, unit="%"),
                    H("attn_diff_float32", "attention vs F.scaled_dot_product_attention", 1e-5, "lower")), figure="test accuracy"),
    LessonHeadline("09", "09_gpt", "A GPT from scratch",
                   "A nanoGPT-style GPT on tiny-shakespeare for a time budget, sampled with a KV cache.",
                   (H("val_loss", "validation loss after 180 s (nats/char)", 1.47, "lower"),
                    H("val_loss_60s", "validation loss after 60 s", 1.70, "lower"),
                    H("kv_cache_same_greedy", "KV cache gives the same tokens", True)), figure="loss against training time"),
    LessonHeadline("10", "10_bert", "BERT with pretrained weights",
                   "kit's BERT loads the real MiniLM weights; probing and fine-tuning vs bag-of-words.",
                   (H("parity_max_abs_err", "parity with sentence-transformers", 1e-4, "lower"),
                    H("acc_finetuned", "fine-tuned test accuracy", "chance+0.2", unit="%"),
                    H("acc_bow", "bag-of-words test accuracy", None, unit="%")), figure="test accuracy"),
    LessonHeadline("11", "11_compression_deployment", "Compression and deployment",
                   "int8 quantization, pruning and distillation measured; ONNX Runtime checked against PyTorch.",
                   (H("acc_int8_static", "int8 (static) accuracy", "acc_teacher-0.03", unit="%"),
                    H("size_kb_int8_static", "int8 (static) size (kB)", "size_kb_fp32*0.4", "lower"),
                    H("onnx_max_abs_diff", "ONNX Runtime vs PyTorch", 1e-4, "lower"))),
    LessonHeadline("12", "12_distributed", "Data-parallel training",
                   "DistributedDataParallel launched by torchrun: 2 processes × B/2 reproduce 1 process × B.",
                   (H("max_rel_loss_diff", "2 × B/2 vs 1 × B (relative loss gap)", 1e-5, "lower"),
                    H("test_acc_ddp", "test accuracy (DDP)", None, unit="%"))),
    LessonHeadline("13", "13_privacy", "Federated learning and differential privacy",
                   "FedAvg on IID and label-skewed clients; DP-SGD with a real privacy accountant.",
                   (H("fedavg_iid_acc", "FedAvg accuracy (IID clients)", 0.8, unit="%"),
                    H("centralized_acc", "centralized accuracy", 0.85, unit="%"),
                    H("opacus_vs_func_max_diff", "Opacus vs torch.func per-sample gradients", 1e-5, "lower"))),
    LessonHeadline("14", "14_recommender", "Recommender systems",
                   "Matrix factorization and BPR against biases, popularity and random baselines.",
                   (H("rmse_mf", "test RMSE, matrix factorization", "rmse_biases", "lower"),
                    H("bpr_ndcg_at_10", "BPR NDCG@10", "pop_ndcg_at_10"))),
    LessonHeadline("15", "15_tokenization_pretrained_gpt", "Tokenization and a pretrained GPT",
                   "Byte-level BPE from scratch, identical to tokenizers; a GPT-2-format checkpoint; a real LLM (SmolLM2) "
                   "run by kit's GPT.",
                   (H("bpe_matches_tokenizers", "BPE ids equal tokenizers'", True),
                    H("gpt2_parity_max_abs_diff", "parity with transformers' GPT-2", 1e-4, "lower"),
                    H("val_bits_per_byte", "validation bits per byte", "unigram_bits_per_byte-0.5", "lower"),
                    H("llm_bits_per_byte", "SmolLM2's bits per byte on the same validation bytes", 2.0, "lower"),
                    H("llm_parity_max_abs_diff", "SmolLM2: kit vs transformers (max |Δ logits|)", None, "lower"))),
    LessonHeadline("16", "16_adapting_pretrained", "Adapting a pretrained model",
                   "LoRA vs full fine-tuning vs head-only on MiniLM; instruction tuning with a prompt-masked loss.",
                   (H("acc_lora", "LoRA test accuracy", 0.5, unit="%"),
                    H("lora_merge_max_abs_diff", "LoRA merged vs unmerged", 1e-5, "lower"),
                    H("sft_exact_match_after", "held-out exact match after SFT", "sft_exact_match_before+0.4", unit="%"))),
    LessonHeadline("17", "17_generative", "Generative models",
                   "VAE, GAN and DDPM on digits, judged by a classifier: confident fraction and Fréchet distance.",
                   (H("ddpm_confident_fraction", "DDPM samples classified with p ≥ 0.9", 0.8, unit="%"),
                    H("ddpm_class_match", "DDPM samples judged as the digit asked for", 0.8, unit="%"),
                    H("fd_ddpm", "Fréchet distance, DDPM", "fd_real_vs_real*2", "lower"),
                    H("fd_gan", "Fréchet distance, GAN", "fd_real_vs_real*4", "lower"),
                    H("fd_vae", "Fréchet distance, VAE", "fd_real_vs_real*5", "lower"),
                    H("vae_kl_check_max_abs_diff", "VAE KL vs torch.distributions", 1e-4, "lower"))),
    LessonHeadline("18", "18_serving_monitoring", "Serving and monitoring",
                   "An HTTP model service load-tested (p50/p99) with Prometheus metrics and drift alerts.",
                   (H("p99_ms", "p99 latency (ms)", None, "lower"),
                    H("bad_requests_rejected", "bad requests rejected", "bad_requests_sent", "equal"),
                    H("drift_alert_shifted", "drift alert on shifted traffic", True),
                    H("drift_alert_clean", "drift alert on clean traffic", False))),
    LessonHeadline("19", "19_llm_finetuning", "Fine-tuning a real LLM",
                   "SmolLM2 instruction-tuned with LoRA (< 1 % of its weights) and DPO on 2 CPU cores; forgetting measured.",
                   (H("llm_sft_exact_match_after", "held-out exact match after LoRA SFT", "llm_sft_exact_match_before+0.25",
                      unit="%"),
                    H("llm_lora_trainable_fraction", "parameters LoRA trains", 0.01, "lower", unit="%"),
                    H("llm_bpb_after_lora", "bits per byte on Shakespeare after LoRA (forgetting)", "llm_bpb_before*1.1",
                      "lower"),
                    H("llm_dpo_pref_acc_after", "held-out preference accuracy after DPO", "llm_dpo_pref_acc_before+0.1",
                      unit="%"))),
    LessonHeadline("20", "20_llm_quantization", "Compressing a real LLM",
                   "SmolLM2 re-quantised to GGUF blocks (bit for bit with gguf): bits per weight vs bits per byte; int8 decode.",
                   (H("quant_matches_gguf", "kit's Q8_0/Q4_0/Q4_1 bytes equal gguf's", True),
                    H("llm_quant_q8_0_rel_cost", "Q8_0: bits per byte vs the file", 0.005, "lower", unit="%"),
                    H("llm_quant_int8_rel_cost", "int8 weight-only: bits per byte vs the file", 0.01, "lower", unit="%"),
                    H("llm_quant_rtn2_rel_cost", "2-bit blocks: bits per byte vs the file (the cliff)", 1.0, unit="%"),
                    H("llm_quant_q4_0_rel_cost", "Q4_0: bits per byte vs the file", None, "lower", unit="%")),
                   figure="bits per weight against bits per byte"),
    LessonHeadline("21", "21_llm_application", "Building an LLM application",
                   "RAG over the installed libraries' docs: recall@k, answers with and without context, injection, serving.",
                   (H("rag_acc_retrieved", "exact match with retrieved documents", "rag_acc_no_context+0.2", unit="%"),
                    H("rag_recall_at_k", "recall@k of BM25 + MiniLM (reciprocal-rank fusion)", 0.8, unit="%"),
                    H("rag_acc_oracle", "exact match with the right document given (oracle)", 0.35, unit="%"),
                    H("injection_success_guarded", "prompt injection's success with the guard (≤ half unguarded)",
                      "injection_success_unguarded*0.5", "lower", unit="%"),
                    H("rag_acc_no_context", "exact match with no context", None, unit="%")),
                   figure="exact match"),
]}


def lesson_of(stem: str) -> LessonHeadline | None:
    """The headline of a notebook stem (``"04_cnn_digits"``, or anything starting with the number);
    ``None`` for a notebook that is not a lesson."""
    m = re.match(r"(\d\d)_", str(stem))
    return LESSONS.get(m.group(1)) if m else None


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not (isinstance(v, float) and math.isnan(v))


def _non_finite(v) -> bool:
    """NaN or ±inf: a float, or the string ``kit.save_metrics`` writes for one (``"nan"``, ``"inf"``, ``"-inf"``)."""
    if isinstance(v, str):
        return v.strip().lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity")
    return isinstance(v, float) and not math.isfinite(v)


# a metric name (it may hold "-" before a digit, as in "l1_below_1e-3"), then optionally +, - or * and a number;
# the name is the shortest prefix that leaves such a tail, unless the whole bar names a metric of the run
_REF = re.compile(r"^\s*([A-Za-z_](?:[\w.]|-(?=\d))*?)\s*(?:([-+*])\s*(\d[\d.]*(?:[eE][-+]?\d+)?))?\s*$")


def bar_metric(bar, metrics: dict | None = None) -> str | None:
    """The name of the metric a bar refers to (``None`` for a number, a bool or no bar)."""
    return _parse(bar, metrics or {})[0] if isinstance(bar, str) else None


def _parse(bar: str, metrics: dict):
    if bar.strip() in metrics:
        return bar.strip(), None, None
    m = _REF.match(bar)
    if not m:
        raise ValueError(f"bad bar {bar!r}: a metric name, optionally followed by +, - or * and a number")
    return m.group(1), m.group(2), m.group(3)


def bar_value(bar, metrics: dict):
    """The bar as a value: a number or bool as it is, a metric reference resolved; ``None`` when it
    names a metric the run lacks, NaN when that metric is not finite."""
    if not isinstance(bar, str):
        return bar
    name, op, k = _parse(bar, metrics)
    ref = metrics.get(name)
    if _non_finite(ref):
        return math.nan
    if op is None:
        return ref
    if not _is_number(ref):
        return None
    return {"+": ref + float(k), "-": ref - float(k), "*": ref * float(k)}[op]


def judge(h: Headline, metrics: dict | None) -> dict:
    """``{"value", "bar", "ok", "text", "bar_text"}`` for one headline. ``ok`` is True / False, or ``None``
    when there is no bar, or the metric or the bar's metric is missing (``text`` is then "—"). A non-finite
    value or bar is ✗."""
    metrics = metrics or {}
    value = metrics.get(h.key)
    bar = bar_value(h.bar, metrics)
    out = {"value": value, "bar": bar, "ok": None, "text": fmt(value, h.unit), "bar_text": ""}
    if h.bar is None:
        return out
    direction = "equal" if isinstance(h.bar, bool) else h.direction
    sign = {"higher": "≥", "lower": "≤", "equal": "="}[direction]
    shown = fmt(bar, h.unit) if bar is not None else MISSING
    out["bar_text"] = f"{sign} {shown}" + (f" ({h.bar})" if isinstance(h.bar, str) else "")
    if value is None or bar is None:
        return out
    if _non_finite(value) or _non_finite(bar):
        out["ok"] = False  # the run diverged (or its baseline did): a broken run, never "not judged"
    elif direction == "equal" or isinstance(value, bool) or isinstance(bar, bool):
        # True == 1 in Python; a bool bar wants a bool
        same_kind = isinstance(value, bool) == isinstance(bar, bool)
        out["ok"] = bool(same_kind and value == bar)
    elif _is_number(value) and _is_number(bar):
        out["ok"] = bool(value >= bar if direction == "higher" else value <= bar)
    return out


def fmt(v, unit: str = "") -> str:
    """A metric value for people: ``—`` when missing, percentages for ``unit="%"``, 4 significant digits."""
    if v is None:
        return MISSING
    if isinstance(v, bool):
        return "yes" if v else "no"
    if _is_number(v):
        if unit == "%":
            return f"{100 * v:.1f} %"
        if isinstance(v, int):
            s = f"{v:,}"
        elif v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            s = f"{v:.1e}".replace("e-0", "e-").replace("e+0", "e")
        else:
            s = f"{v:.4g}"
        return f"{s} {unit}".strip()
    if isinstance(v, float):  # nan
        return "nan"
    return str(v)[:40]


def judge_all(lesson: LessonHeadline | None, metrics: dict | None) -> list[tuple[Headline, dict]]:
    return [(h, judge(h, metrics)) for h in (lesson.metrics if lesson else ())]


def verdict(results: list[tuple[Headline, dict]]) -> bool | None:
    """False when a barred headline is missed; True when every barred headline is met; None otherwise
    (no bars, or a barred metric missing and none missed)."""
    judged = [r["ok"] for h, r in results if h.bar is not None]
    if False in judged:
        return False
    return True if judged and all(judged) else None
