def check(m):
    return (m["val_acc_adam"] > 0.85 and m["test_acc"] > 0.85
            and m["final_val_loss_none"] >= m["final_val_loss_early_stopping"]
            # like with like: early stopping is the unregularized run cut short, so its best is no better
            and m["best_val_loss_early_stopping"] >= m["best_val_loss_none"] - 1e-9
            # L1 with subgradients + Adam: many weights near zero, (almost) none exactly zero
            and m["l1_below_1e-3"] > 2 * m["none_below_1e-3"] and m["l1_exact_zero"] < 0.01)
