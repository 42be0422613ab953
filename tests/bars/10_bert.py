def check(m):
    # the pretrained MiniLM equals the reference implementation (when the notebook checks it); its
    # embeddings put paraphrases together; even in the smoke run (400 sentences) the frozen encoder +
    # linear head and k-NN beat guessing by far, and the MLM head learns something
    parity_ok = m["parity_max_abs_err"] is None or m["parity_max_abs_err"] < 1e-4
    return (parity_ok and m["paraphrase_cosine"] > m["unrelated_cosine"] + 0.3
            and m["acc_head_only"] > m["chance"] + 0.25 and m["acc_knn"] > m["chance"] + 0.25
            and m["accuracy"] > m["chance"] + 0.2 and m["mlm_acc_after"] > m["mlm_acc_before"]
            and m["n_params"] > 22_000_000)
