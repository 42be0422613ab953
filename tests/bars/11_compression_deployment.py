def check(m):
    return (m["acc_teacher"] > 0.9
            # int8 keeps accuracy and is ~4× smaller on disk
            and min(m["acc_int8_dynamic"], m["acc_int8_static"], m["acc_int8_qat"]) > m["acc_teacher"] - 0.03
            and m["size_kb_int8_dynamic"] < 0.4 * m["size_kb_fp32"] and m["size_kb_int8_static"] < 0.4 * m["size_kb_fp32"]
            # pruning: harmless at 50 %, fine-tuning recovers at 90 %
            and m["prune_sweep_acc_50"] > m["acc_teacher"] - 0.03
            and m["acc_pruned90_finetuned"] >= m["acc_pruned90"] and abs(m["sparsity_finetuned"] - 0.9) < 1e-3
            # the student is far smaller and still good
            and m["student_params"] < m["teacher_params"] / 10 and m["acc_student_distilled"] > 0.85
            # ONNX Runtime computes what PyTorch computes
            and m["onnx_max_abs_diff"] <= m["onnx_tolerance"] <= 1e-4 and m["acc_onnx"] == m["acc_teacher"])
