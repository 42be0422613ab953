def check(m):
    return (m["val_acc_adam"] > 0.85 and m["test_acc"] > 0.85
            and m["final_val_loss_none"] >= m["final_val_loss_early_stopping"])
