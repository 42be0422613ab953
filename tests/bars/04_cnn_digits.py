def check(m):
    # smoke run (3 epochs): must still learn; the lesson's own bar (default parameters) is ≥ 0.98
    return (m["test_acc"] >= 0.90 and m["val_acc"] >= 0.90 and m["n_test"] == 1000
            and m["test_f1"] >= 0.88 and m["bar_98"] == (m["test_acc"] >= 0.98))
