"""Smoke-run bar of lesson 16_adapting_pretrained: what metrics.json must show with smoke=True."""


def check(m: dict) -> bool:
    # LoRA merges exactly and trains a small fraction; even the smoke run's classifiers (96 training sentences,
    # one epoch) beat the largest class by far, since they start from the pretrained encoder and a trained head;
    # instruction tuning does not lower held-out exact match (the smoke run's 30 steps are too few to raise it)
    return (m["lora_merge_max_abs_diff"] <= 1e-5 and 0 < m["lora_trainable_fraction"] <= 0.05
            and min(m["acc_head_only"], m["acc_full"], m["acc_lora"]) > 0.5
            and m["sft_exact_match_after"] >= m["sft_exact_match_before"]
            and m["gpt_pretrain_val_loss"] < 3.5)
