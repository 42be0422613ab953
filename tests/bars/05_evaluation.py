def check(m):
    return (m["roc_auc"] > 0.95 and m["binary_f1"] > 0.85
            and 0 < m["threshold_from_validation"] < 1
            # tuning on the scored data is optimistic, measured over re-splits (≥ 0 by construction on each one)
            and m["tuning_on_test_optimism_f1"] > 0 and m["resplit_leaky_f1"] > m["resplit_honest_f1"]
            and m["test_f1_threshold_tuned_on_test"] >= m["binary_f1"]
            # the lesson's point, measured: a useless classifier has high accuracy but zero F1
            and m["imbalanced_trivial_accuracy"] > 0.85 and m["imbalanced_trivial_f1"] == 0.0
            and m["imbalanced_model_f1"] > 0.6 and m["multiclass_accuracy"] > 0.85
            and m["outlier_mse_factor"] > m["outlier_mae_factor"] > 1.0)
