def check(m):
    return (m["max_weight_diff"] < 1e-4 and m["hand_vs_autograd"] < 1e-9
            and m["test_r2"] > 0.9 and m["test_mse"] < 0.1 * m["baseline_mse"])
