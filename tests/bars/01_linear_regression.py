def check(m):
    return (m["max_weight_diff"] < 1e-4 and m["hand_vs_autograd"] < 1e-9
            and m["test_r2"] > 0.9 and m["test_mse"] < 0.1 * m["baseline_mse"]
            # why standardise: the raw problem's Hessian is far worse conditioned and GD gets less far on it
            and m["cond_raw"] > 100 * m["cond_scaled"] and m["raw_gd_loss"] > 1.5 * m["final_gd_loss"])
