def check(m):
    ok = (m["rmse_mf"] < m["rmse_biases"] < m["rmse_global_mean"]  # each part of the model earns its place
          and m["rmse_mf"] <= m["rmse_mf_no_l2"]                     # L2 helps
          and m["bpr_ndcg_at_10"] > m["pop_ndcg_at_10"] and m["bpr_precision_at_10"] > m["pop_precision_at_10"]
          and 0 < m["ndcg_explicit"] <= 1)
    if m["synthetic"]:  # offline: the true factors are known and must be recovered
        ok = ok and (m["recovery_corr_truth_test"] > 0.85 and m["recovery_corr_truth_unobserved"] > 0.6
                     and m["rmse_mf"] < 1.5 * m["recovery_noise_sigma"] and m["recovery_corr_item_bias"] > 0.8)
    return ok
