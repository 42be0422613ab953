def check(m):
    return m["grad_error"] < 1e-8 and m["dot"] == 10.0
