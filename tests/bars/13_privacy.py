def check(m):
    eps = m["dp_epsilons"]
    return (m["fedavg_iid_acc"] > 0.8 and m["fedavg_noniid_acc"] > 0.4 and m["centralized_acc"] > 0.85
            and m["fedavg_iid_acc"] > m["fedavg_noniid_acc"]  # label skew slows FedAvg down
            and m["noniid_max_class_share"] > 0.3  # the non-IID clients really are label-skewed
            # DP: ε shrinks as the noise grows, from a real accountant, with δ reported
            and all(a > b > 0 for a, b in zip(eps, eps[1:])) and 0 < m["dp_delta"] < 1e-3
            and all(a > b for a, b in zip(m["eps_rdp_grid"], m["eps_rdp_grid"][1:]))
            and m["dp_accs"][0] > 0.5 and m["dp_acc_no_noise"] > 0.8
            # per-sample clipping: every clipped norm ≤ C; Opacus and torch.func agree
            and m["clip_max_after"] <= 1.0 + 1e-4 and m["opacus_vs_func_max_diff"] < 1e-5)
