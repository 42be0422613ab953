def check(m):
    return (m["grad_err_fd"] < 1e-6 and m["grad_err_autograd"] < 1e-10
            and m["wrong_grad_err_fd"] > 1e-2 and m["test_acc"] > 0.93)
