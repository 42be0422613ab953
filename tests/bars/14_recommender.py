def check(m):
    ok = (m["rmse_mf"] < m["rmse_biases"] < m["rmse_global_mean"]  # each part of the model earns its place
          and m["rmse_mf"] <= m["rmse_mf_no_l2"]                     # L2 helps
          and m["bpr_ndcg_at_10"] > m["pop_ndcg_at_10"] and m["bpr_precision_at_10"] > m["pop_precision_at_10"]
          and 0 < m["ndcg_explicit"] <= 1
          # the random-order baselines: what NDCG is worth by chance (graded relevance: far above 0)
          and m["ndcg_explicit"] > m["ndcg_explicit_biases"] > m["ndcg_explicit_random"] > 0
          and m["bpr_ndcg_at_10"] > m["pop_ndcg_at_10"] > m["random_ndcg_at_10"]
          # k is chosen on validation and used: the chosen model's test RMSE is reported
          and m[f"k_sweep_val_rmse_{m['chosen_k']}"] == min(v for k, v in m.items() if k.startswith("k_sweep_val_rmse_"))
          and m["rmse_mf_chosen_k"] < m["rmse_biases"])
    if m["synthetic"]:  # offline: the true factors are known and must be recovered
        ok = ok and (m["recovery_corr_truth_test"] > 0.85 and m["recovery_corr_truth_unobserved"] > 0.6
                     and m["rmse_mf"] < 1.5 * m["recovery_noise_sigma"] and m["recovery_corr_item_bias"] > 0.8)
    return ok
