"""Smoke-run bar of lesson 18_serving_monitoring: what metrics.json must show with smoke=True."""


def check(m: dict) -> bool:
    return (m["bad_requests_sent"] >= 10 and m["bad_requests_rejected"] == m["bad_requests_sent"]
            and m["drift_alert_clean"] is False and m["drift_alert_shifted"] is True
            and m["psi_min_shifted"] > m["psi_max_clean"] and m["acc_reference"] > 0.7
            and m["acc_last_window"] < m["acc_reference"] and m["server_stopped"] is True)
