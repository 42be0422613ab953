def check(m):
    return (m["roc_auc"] > 0.95 and m["binary_f1"] > 0.85
            # the lesson's point, measured: a useless classifier has high accuracy but zero F1
            and m["imbalanced_trivial_accuracy"] > 0.85 and m["imbalanced_trivial_f1"] == 0.0
            and m["imbalanced_model_f1"] > 0.6 and m["multiclass_accuracy"] > 0.85
            and m["outlier_mse_factor"] > m["outlier_mae_factor"] > 1.0)
