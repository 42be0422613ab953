"""Smoke-run bar of lesson 21_llm_application: what metrics.json must show with smoke=True."""


def check(m: dict) -> bool:
    # the smoke run indexes real documents (numpy, torch, scikit-learn) with BM25 and the real MiniLM, so retrieval
    # works: the hybrid finds most right documents among the first k (a broken BM25 or embedding drops it to ~k/60);
    # the random stand-in LLM answers nothing right, but every condition was scored and every rate is a fraction
    rates = ("rag_acc_no_context", "rag_acc_retrieved", "rag_acc_oracle", "injection_success_unguarded",
             "injection_success_guarded", "mc_acc_zero_shot", "mc_acc_few_shot")
    return (m["rag_recall_at_k"] >= 0.6 and m["rag_recall_at_k"] >= max(m["rag_recall_at_k_bm25"], m["rag_recall_at_k_minilm"]) - 0.25
            and all(0 <= m[r] <= 1 for r in rates) and m["stand_in"] is True
            and isinstance(m["drift_alert_drifted"], bool))
