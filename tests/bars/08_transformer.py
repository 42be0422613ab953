def check(m):
    # smoke run (2 epochs of a 1-layer encoder, sentences cut at 32 tokens: test accuracy ≈ 0.68 against chance 0.25,
    # an untrained encoder stays near chance): clearly above chance; the baseline works;
    # the written-out attention equals PyTorch's fused kernel; position codes are not drowned by the
    # token vectors at initialisation (≈ 0.7 for both kinds; at d = 64 it was 0.09 sinusoidal / 0.0025 learned before the scale fix)
    return (m["test_acc"] > m["chance"] + 0.2 and m["val_acc"] > m["chance"] + 0.2
            and m["bow_test_acc"] > m["chance"] + 0.3
            and m["attn_diff_float64"] < 1e-6 and m["attn_diff_float32"] < 1e-5 and m["mha_diff"] < 1e-10
            and 0.5 < m["init_ratio_sinusoidal"] < 1.0 and 0.5 < m["init_ratio_learned"] < 1.0)
