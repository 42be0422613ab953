def check(m):
    return (m["test_acc"] >= 0.85
            # integrated gradients: attributions add up to f(x) − f(black) (trapezoid rule error only)
            and m["ig_completeness_rel_gap"] <= 0.05
            # Grad-CAM maps are non-negative
            and m["gradcam_min"] >= 0.0
            # Grad-CAM weighs the rectified block output (after BN and ReLU): non-negative, unlike the raw conv
            and m["gradcam_activation_min"] >= 0.0 and m["conv_output_negative_share"] > 0.05
            # sanity check: a randomly re-initialised network must give measurably different maps
            and m["sanity_spearman_saliency"] <= 0.6 and m["sanity_spearman_grad_cam"] <= 0.6
            and m["sanity_spearman_smoothgrad"] <= 0.6
            and m["sanity_spearman_integrated_gradients_ink"] < m["sanity_spearman_integrated_gradients"]
            and m["random_model_acc"] <= 0.5)
