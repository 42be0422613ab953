"""Smoke-run bar of lesson 19_llm_finetuning: what metrics.json must show with smoke=True."""


def check(m: dict) -> bool:
    # the smoke run's tiny random Llama (SmolLM2's tokenizer and template) cannot learn the tasks in 20 steps, but its
    # answer-token loss must fall, LoRA must train a small fraction, the general text must stay about as predictable,
    # and DPO must not lower held-out preference accuracy
    return (0 < m["llm_lora_trainable_fraction"] <= 0.05 and m["llm_sft_loss_last"] < m["llm_sft_loss_first"] - 0.1
            and abs(m["llm_bpb_after_lora"] / m["llm_bpb_before"] - 1) < 0.05
            and m["llm_dpo_pref_acc_after"] >= m["llm_dpo_pref_acc_before"]
            and all(0 <= m[k] <= 1 for k in ("llm_sft_exact_match_before", "llm_sft_exact_match_after",
                                             "llm_dpo_exact_match_after")))
