def check(m):
    return (m["world_size"] == m["nproc"] == 2
            # 2 processes × B/2 follow the 1-process curve with batch B
            and m["max_rel_loss_diff"] <= m["rtol"] <= 1e-5 and m["final_weights_max_diff"] < 1e-4
            # a hand-written all_reduce of the gradients is DDP's gradient, and the replicas stay identical
            and m["manual_vs_ddp_max_loss_diff"] <= 1e-6 and m["first_step_grad_max_diff"] <= 1e-6
            and m["replica_max_diff"] == 0.0
            and m["final_loss_ddp"] < 2.0 and abs(m["test_acc_ddp"] - m["test_acc_single"]) < 0.01
            # the linear scaling rule: a global batch lr_scale× larger at the same rate trains less per epoch;
            # the rate scaled by lr_scale makes up for much of it
            and m["loss_big_batch_scaled_lr"] < m["loss_big_batch_same_lr"]
            and m["acc_big_batch_scaled_lr"] >= m["acc_big_batch_same_lr"])

