# %% [markdown] id="c00"
# # 18 — Serving and monitoring: an HTTP service, a load test, drift alerts
#
# **Goals.** Lesson 11 ended with a model in an ONNX file. Here it goes into service and is watched there, with
# the parts real deployments use: a **FastAPI** app served by **uvicorn** over an **ONNX Runtime** session
# (`kit serve MODEL`), with `POST /predict`, `GET /health` and `GET /metrics` in the **Prometheus** text format;
# strict input checks (every bad request gets a clear 4xx and the service keeps serving); a **load test** with
# async clients at 1…64 concurrent users — throughput and p50/p95/p99 latency, with **dynamic micro-batching** on
# and off; and **monitoring**: a reference window of clean traffic, then live windows of clean and shifted
# traffic (noisy digits, rotated digits, a changed class mix), **PSI** and **KS** tests on input statistics and
# on the model's outputs, alerts meant to fire on shifted windows only (and how often they fire on clean ones), and
# the accuracy decay that the delayed labels confirm only later. One dashboard figure shows it all.
#
# **Data.** scikit-learn's 1 797 real 8×8 handwritten digits (UCI): a wide MLP is trained on 60 % of them in the
# lesson and exported to ONNX; the other 40 % are the live traffic (never trained on).
# %% tags=["parameters"]
seed = 0                  # random seed
device = "auto"           # "auto", "cpu", "cuda" or "mps" (training only: the service runs ONNX Runtime on the CPU)
smoke = False             # tiny run for tests (well under 30 s on 2 CPU cores)
hidden = 2048             # MLP width (two hidden layers): wide, so the model is a visible share of each request
epochs = 5                # training epochs
max_concurrency = 64      # load test: 1, 2, 4, … concurrent clients up to this
requests_per_level = 300  # load test: requests at each concurrency (at most)
seconds_per_level = 4.0   # load test: seconds at each concurrency (at most)
max_batch = 32            # micro-batching: rows per model call at most
max_wait_ms = 2.0         # micro-batching: longest wait for a batch to fill
window = 300              # monitoring: examples per window
noise = 0.35              # shifted traffic: standard deviation of the added pixel noise
rotate = 25.0             # shifted traffic: rotation in degrees
psi_threshold = 0.25      # alert when a statistic's PSI exceeds this
ks_alpha = 0.01           # ... or when a KS p-value is below ks_alpha / (number of KS tests)
timeline = 12             # monitoring: windows in the timeline where the noise creeps in
false_alarm_trials = 200  # monitoring: random pairs of disjoint clean windows, to measure how often clean traffic alerts
label_delay = 3           # windows until a window's true labels arrive
# %%
import kit
from kit.params import Float, Int, validate

validate(globals(), hidden=Int(16, 8192), epochs=Int(1, 1000), max_concurrency=Int(1, 256),
         requests_per_level=Int(10, 100_000), seconds_per_level=Float(0.5, 600), max_batch=Int(1, 256),
         max_wait_ms=Float(0, 100), window=Int(50, 100_000), noise=Float(0, 1, lo_open=True),
         rotate=Float(1, 180), psi_threshold=Float(0, 10, lo_open=True), ks_alpha=Float(0, 1, lo_open=True, hi_open=True),
         timeline=Int(4, 200), label_delay=Int(0, 50), false_alarm_trials=Int(10, 100_000))
# one torch thread: the service and the load test's clients each need a core of their own later, and on a busy
# machine extra threads that spin while they wait slow training down rather than up
dev = kit.setup(seed, device, threads=1)
if smoke:
    hidden, epochs, max_concurrency = min(hidden, 256), min(epochs, 2), min(max_concurrency, 8)
    requests_per_level, seconds_per_level, window, timeline = min(requests_per_level, 40), min(seconds_per_level, 0.5), 250, 6
    label_delay, false_alarm_trials = min(label_delay, 2), min(false_alarm_trials, 100)
# %% [markdown] id="c03"
# ## The model to serve
# Train a two-layer MLP on the digits and export it with `kit.techniques.export.to_onnx` (lesson 11), with a
# dynamic batch axis so the service can send it any number of rows. The service never imports torch: it loads
# the `.onnx` file into an ONNX Runtime session.
# %%
import json
import os
import time

import httpx
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

import kit.data
import kit.viz as viz
from kit.models import MLP, MLPConfig, n_params
from kit.serve import app as service
from kit.serve import loadtest, monitor
from kit.techniques import export
from kit.techniques.compress import latency_ms
from kit.train import accuracy, fit
from kit.viz import serving as dash

digits = kit.data.load("digits")
tr, va, te = kit.data.split(len(digits), (0.6, 0.2, 0.2), seed=seed, stratify=digits.y)
X_all = (digits.X / 16.0).astype(np.float32)
y_all = np.asarray(digits.y)
torch.manual_seed(seed)
model = MLP(MLPConfig(64, 10, hidden=(hidden, hidden)))
t0 = time.perf_counter()
hist = fit(model, (torch.tensor(X_all[tr]), torch.tensor(y_all[tr])), (torch.tensor(X_all[va]), torch.tensor(y_all[va])),
           loss_fn=F.cross_entropy, metrics={"acc": accuracy}, optimizer="adam", lr=1e-3, epochs=epochs, batch_size=64, device=dev,
           seed=seed, progress=False)
train_seconds = time.perf_counter() - t0
model = model.cpu().eval()
work = kit.results.scratch_dir("18")  # exported files go here, never next to the notebook
onnx_path, exporter = export.to_onnx(model, torch.tensor(X_all[:2]), work / "digits_mlp.onnx", dynamo=False)
pool = np.concatenate([va, te])                  # the live traffic: images the model never trained on
print(f"{n_params(model):,} parameters, validation accuracy {hist['val_acc'][-1]:.3f}; exported with {exporter} "
      f"→ {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB); {len(pool)} images for the traffic")
# %% [markdown] id="c05"
# ## The service
# `kit serve <the .onnx path printed above>` (or `python -m kit.serve`) starts uvicorn with the app of `kit.serve.app.create_app`.
# It binds **127.0.0.1** by default: only this machine can reach it. Every request body is checked before the
# model sees it — JSON, an object with `"inputs"`, a non-empty list of rows of exactly 64 finite numbers, no more
# rows than the cap, no more bytes than the cap — and whatever fails gets a 4xx with one sentence saying why:
# %%
viz.source(service.parse_batch)
# %% [markdown] id="c07"
# The notebook starts the service as a **separate process** (`ServerProcess`): the load test's clients and the
# server then run on different cores, as they would in production. First without micro-batching, inside a `with`
# block that stops it whatever happens; then with micro-batching, kept running for the rest of the lesson and
# stopped in its last cells. A failure in between cannot leave it behind either: every `ServerProcess` is
# registered with `atexit`, and the server watches this kernel's process id and exits when the kernel is gone.
# %%
rng = np.random.default_rng(seed)


def body(rows) -> bytes:
    return json.dumps({"inputs": np.round(np.asarray(rows, dtype=np.float64), 4).tolist()}).encode()


single = [body(X_all[i:i + 1]) for i in rng.choice(pool, 200)]  # one image per request, as a user sends them
levels = [c for c in (1, 2, 4, 8, 16, 32, 64, 128, 256) if c <= max_concurrency]
sweeps = {}
with service.ServerProcess(onnx_path) as plain:
    print("health:", httpx.get(plain.url + "/health").json())
    print("three images:", loadtest.send_all(plain.url, [body(X_all[pool[:3]])])[0], "true:", y_all[pool[:3]].tolist())
    sweeps["batching off"] = loadtest.sweep_concurrency(plain.url, single, levels, requests_per_level, seconds_per_level)
assert not plain.running
srv = service.ServerProcess(onnx_path, batching=True, max_batch=max_batch, max_wait_ms=max_wait_ms).start()
sweeps["batching on"] = loadtest.sweep_concurrency(srv.url, single, levels, requests_per_level, seconds_per_level)
pd.DataFrame([{"mode": m, **{k: r[k] for k in ("concurrency", "requests", "ok", "rps", "p50_ms", "p95_ms", "p99_ms")}}
              for m, rows in sweeps.items() for r in rows]).round(1)
# %% [markdown] id="c09"
# ## The load test
# Each level runs `c` async clients (httpx, one kept-alive connection each); a client sends its next request as
# soon as the last is answered, until `requests_per_level` requests or `seconds_per_level` seconds. **Throughput**
# is answered requests per second; **latency** percentiles are over every request of the level.
# With more clients than the server can serve at once, requests queue: throughput levels off and latency grows
# with the queue (Little's law: clients ≈ throughput × latency). **Micro-batching** lets concurrent requests
# share one model call (up to `max_batch` rows, waiting at most `max_wait_ms` for the batch to fill).
#
# What batching can save is the model's share of the work. Timed directly on the ONNX Runtime session (one
# thread, median of repeated calls), away from HTTP:
# %%
run_model = export.ort_runner(export.ort_session(onnx_path))
model_ms_1 = latency_ms(run_model, X_all[pool[:1]], repeats=30)
model_ms_batch = latency_ms(run_model, X_all[pool[:max_batch]], repeats=30) / max_batch
display(Markdown(f"One image alone: {model_ms_1:.3f} ms per model call; in a batch of {max_batch}: "
                 f"{model_ms_batch:.3f} ms per image ({model_ms_1 / model_ms_batch:.1f}× less). A request also costs "
                 f"the server its HTTP and JSON handling, which batching does not shrink: the one-client latency "
                 f"below ({sweeps['batching off'][0]['p50_ms']:.1f} ms median) is the sum of both, plus the client's share."))
# %%
viz.show(dash.load_figure(sweeps, title="load test: one image per request"))
best = {m: max(rows, key=lambda r: r["rps"]) for m, rows in sweeps.items()}
rps_max = best["batching on"]["rps"]
batching_speedup = best["batching on"]["rps"] / best["batching off"]["rps"]
p50_ms, p99_ms = best["batching on"]["p50_ms"], best["batching on"]["p99_ms"]
clients = {m: f"{b['concurrency']} client{'s' if b['concurrency'] > 1 else ''}" for m, b in best.items()}
display(Markdown(
    f"Measured on this machine: without batching the service peaks at **{best['batching off']['rps']:.0f} requests/s** "
    f"(at {clients['batching off']}), with micro-batching at **{rps_max:.0f} requests/s** "
    f"(at {clients['batching on']}): {batching_speedup:.2f}× the throughput"
    + (" — batching pays" if batching_speedup > 1.1 else
       " — batching cost more than it saved here" if batching_speedup < 0.9 else
       " — no clear difference here: per request, the HTTP and JSON work outweighs the model time batching saves")
    + f". At that peak the median latency is {p50_ms:.1f} ms and p99 {p99_ms:.1f} ms. With one client, p50 is "
    f"{sweeps['batching off'][0]['p50_ms']:.1f} ms without batching and {sweeps['batching on'][0]['p50_ms']:.1f} ms "
    f"with it. A lone request has nobody to share a model call with, so batching cannot help it; it can cost up "
    f"to `max_wait_ms` = {max_wait_ms:g} ms of waiting for company that never comes, plus the hand-over to the "
    f"model's thread — a difference at one client larger than that is noise. These are wall-clock numbers of a "
    f"shared machine ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end of the test; the "
    f"clients run on the same cores as the server): rerun and they move."))
# %% [markdown] id="c12"
# ## Bad requests
# A service on a network receives everything: truncated JSON, wrong shapes, strings, `NaN`, a batch of a
# million rows. Each kind below must get a 4xx (and a message), and the service must answer normally afterwards.
# %%
row = np.round(X_all[pool[0]].astype(np.float64), 4).tolist()
bad = {
    "malformed JSON": b'{"inputs": [[0.1, 0.2',
    "not UTF-8": b"\xff\xfe\x00",
    "not an object": b"[1, 2, 3]",
    "no 'inputs' key": b'{"images": [[0.1]]}',
    "wrong shape (63 values)": json.dumps({"inputs": [row[:63]]}).encode(),
    "ragged rows": json.dumps({"inputs": [row, row[:10]]}).encode(),
    "3-D input": json.dumps({"inputs": [[row]]}).encode(),
    "strings": json.dumps({"inputs": [[str(v) for v in row]]}).encode(),
    "booleans": json.dumps({"inputs": [[True] + row[1:]]}).encode(),
    "NaN": b'{"inputs": [[NaN' + b", 0.5" * 63 + b"]]}",
    "infinity (1e400)": b'{"inputs": [[1e400' + b", 0.5" * 63 + b"]]}",
    "empty batch": b'{"inputs": []}',
    "batch over the row cap": json.dumps({"inputs": [row] * 257}).encode(),
    "body over the byte cap": b'{"inputs": [[' + b" " * 1_100_000 + b"0.5]]}",
}
answers = loadtest.send_all(srv.url, list(bad.values()))
after = loadtest.send_all(srv.url, [body(X_all[pool[:2]])])[0]
health = httpx.get(srv.url + "/health").json()
bad_requests_sent = len(bad)
bad_requests_rejected = sum(400 <= status < 500 for status, _ in answers)
display(pd.DataFrame([{"request": k, "status": s, "answer": a.get("error", a)} for k, (s, a) in zip(bad, answers)]))
display(Markdown(f"**{bad_requests_rejected} of {bad_requests_sent}** bad requests were rejected with a 4xx; "
                 f"afterwards `/health` says `{health['status']}` and a good request got status {after[0]} "
                 f"with predictions {after[1]['predictions']}."))
# %% [markdown] id="c14"
# ## Monitoring: is the traffic still what the model was trained for?
# Labels arrive late in production (if ever), so a service watches what it *can* see at once: statistics of its
# **inputs** (mean intensity, its spread, the share of inked pixels) and of its **outputs** (the top probability —
# the model's confidence — and the predicted class). A **reference window** of clean traffic fixes their
# distributions; each **live window** is compared with it. The images are split once into two disjoint halves:
# the reference window is drawn from one, every live window from the other, so a clean live window shares no
# image with the reference — as fresh traffic would not (shared images would make clean windows look more alike
# than they are, and hide false alarms).
#
# * **PSI** (population stability index) bins a statistic at the reference's deciles and compares the shares:
#   $\mathrm{PSI} = \sum_b (a_b - e_b)\,\ln(a_b / e_b)$ with $e_b$, $a_b$ the reference's and the live window's
#   shares of bin $b$ (shares below a small $\varepsilon$ raised to $\varepsilon$). Rule of thumb: < 0.1 stable,
#   > 0.25 a large shift. The predicted class gets one bin per class.
# * **KS** (two-sample Kolmogorov–Smirnov, `scipy.stats.ks_2samp`): the largest gap between the two empirical
#   CDFs, with a p-value. Several tests on one window multiply the chances of a false alarm, so each KS test uses
#   `ks_alpha` divided by the number of tests (Bonferroni).
#
# A window **alerts** when any statistic's PSI exceeds `psi_threshold` or any KS p-value falls below that level.
# %%
from scipy import ndimage


def traffic(kind: str, n: int, gen, source) -> tuple[np.ndarray, np.ndarray]:
    """n images drawn from `source` (indices of digits) as a given kind of traffic, and their true labels; without
    replacement where `source` has enough images of the kind."""
    if kind == "class mix (only 0–4)":
        source = source[y_all[source] < 5]
    idx = gen.choice(source, n, replace=n > len(source))
    X = X_all[idx].copy()
    if kind.startswith("noisy"):
        X = np.clip(X + gen.normal(0, float(kind.split("σ=")[1].rstrip(")")), X.shape), 0, 1)
    if kind == "rotated":
        X = np.stack([ndimage.rotate(x.reshape(8, 8), rotate, reshape=False, order=1).ravel() for x in X])
        X = np.clip(X, 0, 1)
    return X.astype(np.float32), y_all[idx]


def observe(url: str, X: np.ndarray) -> np.ndarray:
    """Send X through the service (50 rows per request) and rebuild each example's class probabilities'
    top value and argmax from the answers."""
    answers = loadtest.send_all(url, [body(X[i:i + 50]) for i in range(0, len(X), 50)])
    pred = np.concatenate([a["predictions"] for _, a in answers])
    conf = np.concatenate([a["confidence"] for _, a in answers])
    probs = np.zeros((len(X), 10))  # the service answers the top class and its probability
    probs[np.arange(len(X)), pred] = conf
    return probs


live_kinds = ["clean 1", "clean 2", "clean 3", f"noisy (σ={noise})", "rotated", "class mix (only 0–4)"]
gen = np.random.default_rng(seed + 1)
halves = gen.permutation(pool)
ref_pool, live_pool = halves[:len(pool) // 2], halves[len(pool) // 2:]  # disjoint: no image in both
X_ref, y_ref = traffic("clean", window, gen, ref_pool)
ref = monitor.window_stats(X_ref, observe(srv.url, X_ref))
reports, accs = {}, {}
for kind in live_kinds:
    X, y = traffic(kind, window, gen, live_pool)
    stats = monitor.window_stats(X, observe(srv.url, X))
    reports[kind] = monitor.drift_report(ref, stats, n_classes=10, psi_threshold=psi_threshold, ks_alpha=ks_alpha)
    accs[kind] = float((stats["predicted"] == y).mean())
# the timeline: clean at first, then the noise creeps in window by window
sigmas = [0.0 if k < timeline // 3 else noise * (k - timeline // 3 + 1) / (timeline - timeline // 3)
          for k in range(timeline)]
steps = []
for k, s in enumerate(sigmas):
    X, y = traffic("clean" if s == 0 else f"noisy (σ={s})", window, gen, live_pool)
    stats = monitor.window_stats(X, observe(srv.url, X))
    r = monitor.drift_report(ref, stats, n_classes=10, psi_threshold=psi_threshold, ks_alpha=ks_alpha)
    steps.append({"window": k, "sigma": s, "psi_max": r["psi_max"], "alert": r["alert"],
                  "accuracy": float((stats["predicted"] == y).mean())})
acc_ref = float((ref["predicted"] == y_ref).mean())
print(f"{len(ref_pool)} images for the reference window, {len(live_pool)} others for the live windows "
      f"({window} per window{'' if window <= len(live_pool) else ', so some images repeat within a window'})")
pd.DataFrame([{"window": k, **{r["statistic"]: f"PSI {r['psi']:.3f}" + ("" if np.isnan(r["ks_p"]) else f", KS p {r['ks_p']:.1e}")
                               + (" ⚠" if r["alert"] else "") for r in rep["table"]},
               "alert": rep["alert"], "accuracy": accs[k]} for k, rep in reports.items()])
# %%
clean = [k for k in live_kinds if k.startswith("clean")]
shifted = [k for k in live_kinds if not k.startswith("clean")]
drift_alert_clean = any(reports[k]["alert"] for k in clean)
drift_alert_shifted = all(reports[k]["alert"] for k in shifted)
false_alarms = [k for k in clean if reports[k]["alert"]]
missed = [k for k in shifted if not reports[k]["alert"]]
if not false_alarms and not missed:
    outcome = "In this run the alerts fired on every shifted window and on none of the clean ones"
else:
    outcome = "In this run " + " and ".join(part for part in (
        f"the clean window(s) {', '.join(false_alarms)} alerted (false alarms)" if false_alarms else "",
        f"the shifted window(s) {', '.join(missed)} did not alert (missed)" if missed else "") if part)
display(Markdown(
    f"Reference accuracy {acc_ref:.3f}. Clean windows: largest PSI "
    f"{max(reports[k]['psi_max'] for k in clean):.3f}, smallest KS p-value {min(reports[k]['ks_p_min'] for k in clean):.2g} "
    f"→ alert: **{drift_alert_clean}**. Shifted windows: " + "; ".join(
        f"{k}: largest PSI {reports[k]['psi_max']:.2f}, accuracy {accs[k]:.3f}, alert **{reports[k]['alert']}**"
        for k in shifted) + f". {outcome} — and no alert needed a single label."))
# %% [markdown] id="c17"
# ## How often does clean traffic alert?
# A few clean windows say little either way: an alert rule is judged by its **false-alarm rate** over many
# clean windows. Each trial below splits the lesson's images at random into two disjoint windows of the same
# size, a reference and a clean live window, and runs the same drift report on them (the model's outputs for
# every image come from the service once; clean images do not change). The trials reuse the same images, so they
# are not independent draws from the world, but no image is ever in both windows of a trial.
#
# The same trials show PSI's **sampling floor**: two samples of one distribution never have identical histograms,
# so PSI between two clean windows is positive, and it shrinks only as the windows grow. For one statistic
# binned in $B$ bins, a chi-square approximation puts its mean near $(B - 1)(1/n_\mathrm{ref} + 1/n_\mathrm{live})$.
# %%
from scipy.stats import binomtest

S_pool = monitor.window_stats(X_all[pool], observe(srv.url, X_all[pool]))
n_fa = min(window, len(pool) // 2)
fa_gen = np.random.default_rng(seed + 2)
trials = []
for _ in range(false_alarm_trials):
    order = fa_gen.permutation(len(pool))
    r = monitor.drift_report({k: v[order[:n_fa]] for k, v in S_pool.items()},
                             {k: v[order[n_fa:2 * n_fa]] for k, v in S_pool.items()},
                             n_classes=10, psi_threshold=psi_threshold, ks_alpha=ks_alpha)
    trials.append(r)
n_alarms = sum(r["alert"] for r in trials)
false_alarm_rate = n_alarms / len(trials)
ci = binomtest(n_alarms, len(trials)).proportion_ci(0.95)
by_psi = sum(any(row["psi"] > psi_threshold for row in r["table"]) for r in trials)
by_ks = sum(r["ks_p_min"] < ks_alpha / len(monitor.STATS) for r in trials)
psi_clean = pd.DataFrame([{row["statistic"]: row["psi"] for row in r["table"]} | {"largest": r["psi_max"]}
                          for r in trials])
psi_approx = (10 - 1) * (1 / n_fa + 1 / n_fa)
psi_floor_median, psi_floor_p95 = float(psi_clean["largest"].median()), float(psi_clean["largest"].quantile(0.95))
display(psi_clean.describe(percentiles=[0.5, 0.95]).loc[["mean", "50%", "95%", "max"]].round(3))
display(Markdown(
    f"**False alarms:** {n_alarms} of {len(trials)} pairs of disjoint clean windows of {n_fa} images alerted, a rate "
    f"of {false_alarm_rate:.1%} (95 % interval {ci.low:.1%}–{ci.high:.1%}); {by_psi} of them by a PSI above "
    f"{psi_threshold:g}, {by_ks} by a KS p-value below {ks_alpha:g}/{len(monitor.STATS)}. "
    f"**PSI's floor at n = {n_fa}:** between two clean windows the input mean's PSI (10 bins) averages "
    f"{psi_clean['input_mean'].mean():.3f}, against {psi_approx:.3f} from the approximation; the largest of a "
    f"window's PSIs, which the alert looks at, has median {psi_floor_median:.3f} and 95th percentile "
    f"{psi_floor_p95:.3f}. So at this window size sampling alone produces PSIs up to about {psi_floor_p95:.2f}"
    + (" — above the rule of thumb's 0.1 for 'stable', which cannot be read literally at this size" if psi_floor_p95 > 0.1 else
       ", under the rule of thumb's 0.1 for 'stable'")
    + f"; the alert threshold {psi_threshold:g} is {psi_threshold / psi_floor_p95:.1f}× that."))
# %% [markdown] id="c19"
# ## Accuracy decays; the labels say so late
# In the timeline the noise grows from window to window after a clean start. The drift statistics are known as
# each window ends; a window's accuracy only when its true labels arrive, `label_delay` windows later (a user
# confirms, a human reviews, a payment clears). The dashboard puts both on one time axis.
# %%
viz.show(dash.dashboard(sweeps, [{"name": k, "psi_max": r["psi_max"], "alert": r["alert"]} for k, r in reports.items()],
                        steps, psi_threshold, label_delay, title="serving dashboard"))
first_alert = next((s["window"] for s in steps if s["alert"]), None)
first_drop = next((s["window"] for s in steps if s["accuracy"] < acc_ref - 0.05), None)
display(Markdown(
    f"Measured: the first drift alert comes at window {first_alert}; the first window whose accuracy is more than "
    f"5 points under the reference ({acc_ref:.3f}) is window {first_drop}, and its labels arrive at window "
    f"{None if first_drop is None else first_drop + label_delay}. Accuracy in the last window: "
    f"{steps[-1]['accuracy']:.3f} (noise σ = {steps[-1]['sigma']:.2f})."))
# %% [markdown] id="c21"
# What the service itself exposes: Prometheus scrapes `/metrics` every few seconds and stores the series; the
# same drift tests can then run on its histograms (`kit_input_mean`, `kit_confidence`, …). A few lines of it:
# %%
scraped = httpx.get(srv.url + "/metrics").text
print("\n".join(line for line in scraped.splitlines()
                if line.startswith(("kit_requests_total", "kit_rejected_total", "kit_predicted_class_total",
                                    "kit_model_batch_rows_count", "kit_model_batch_rows_sum"))))
srv.stop()
assert not srv.running, "the service must be stopped"
print("service stopped")
# %%
kit.save_metrics({"bad_requests_sent": bad_requests_sent, "bad_requests_rejected": bad_requests_rejected,
                  "drift_alert_clean": drift_alert_clean, "drift_alert_shifted": drift_alert_shifted,
                  "psi_max_clean": max(reports[k]["psi_max"] for k in clean),
                  "psi_min_shifted": min(reports[k]["psi_max"] for k in shifted),
                  "acc_reference": acc_ref, "acc_last_window": steps[-1]["accuracy"],
                  "first_alert_window": first_alert, "false_alarm_rate": false_alarm_rate,
                  "psi_floor_median": psi_floor_median, "psi_floor_p95": psi_floor_p95,
                  "server_stopped": not srv.running},
                 timing={"p50_ms": p50_ms, "p99_ms": p99_ms, "rps_max": rps_max, "batching_speedup": batching_speedup,
                         "train_seconds": train_seconds, "model_ms_batch1": model_ms_1,
                         "model_ms_per_row_batched": model_ms_batch, "load_average": os.getloadavg()[0],
                         "curves": {f"rps {m}": [r["rps"] for r in rows] for m, rows in sweeps.items()}},
                 params={"device": str(dev), "onnx_exporter": exporter})
# %% [markdown] id="c24"
# ## Exercises
# Each check cell runs your answer against kit's own reference **on fresh random inputs and edge cases**; a
# failure names the first case that differs and gives a hint. `hint("18.2", 2)` shows the next hint.
#
# **Exercise 18.1 (implement: PSI, bin by bin).** An alert says *that* a statistic moved; the PSI of each bin says
# *where*. Write `psi_by_bin(reference, live, bins, eps)`: from two raw samples of one statistic (the reference
# window's values, then the live window's), return the array of each bin's term
# $(a_b - e_b)\ln(a_b/e_b)$ — their sum is the PSI the monitor alerts on. The bins are the monitor's:
#
# * the inner edges are the **reference's** quantiles at $1/B, 2/B, \dots, (B-1)/B$ for $B$ = `bins` (numpy's
#   default quantile), an edge that comes out twice kept once — so there are (number of distinct edges + 1) bins;
# * the bins are $(-\infty, t_1], (t_1, t_2], \dots, (t_\text{last}, \infty)$: a value equal to an edge counts in
#   the bin below it;
# * $e_b$ and $a_b$ are the shares of each sample in bin $b$, a share below `eps` raised to `eps`.
#
# Identical samples give 0 in every bin; a live window that leaves a bin empty gives a large but finite term.
# %% tags=["solution"]
def psi_by_bin(reference, live, bins, eps):
    reference = np.asarray(reference, dtype=np.float64)
    live = np.asarray(live, dtype=np.float64)
    edges = np.unique(np.quantile(reference, np.arange(1, bins) / bins))
    n_bins = len(edges) + 1
    e = np.bincount(np.searchsorted(edges, reference, side="left"), minlength=n_bins) / len(reference)
    a = np.bincount(np.searchsorted(edges, live, side="left"), minlength=n_bins) / len(live)
    e, a = np.maximum(e, eps), np.maximum(a, eps)
    return (a - e) * np.log(a / e)
# %%
from kit.exercises import check, hint
check("18.1", psi_by_bin)
# %% [markdown] id="c27"
# **Exercise 18.2 (a percentile from histogram buckets).** "p99" is not one definition. This lesson's load
# test computes it from every request's latency, interpolating between sorted samples (numpy's default). A service
# cannot keep every latency: `kit serve` counts them in a Prometheus **histogram** — for each upper bound
# $le_1 < le_2 < \dots < +\infty$ the number of requests with latency $\le le_i$ (cumulative counts) — and a
# dashboard asks Prometheus for `histogram_quantile(0.99, …)`, an estimate from those counts alone. Write
# `histogram_quantile(q, upper_bounds, cumulative_counts)` for `q` in (0, 1] as Prometheus does: the rank is
# $q$ times the total count; the answer is in the first bucket whose cumulative count reaches the rank, placed
# linearly between that bucket's lower and upper bound as if its requests were spread evenly. A rank that falls
# in the $+\infty$ bucket gives the largest finite upper bound; the first bucket's lower bound is 0 (unless its
# upper bound is $\le 0$: then that upper bound is the answer).
# %% tags=["solution"]
def histogram_quantile(q, upper_bounds, cumulative_counts):
    le = np.asarray(upper_bounds, dtype=float)
    cum = np.asarray(cumulative_counts, dtype=float)
    rank = q * cum[-1]
    b = 0
    while b < len(le) - 1 and cum[b] < rank:
        b += 1
    if b == len(le) - 1:
        return float(le[-2])
    if b == 0:
        return float(le[0]) if le[0] <= 0 else float(le[0] * rank / cum[0])
    inside = cum[b] - cum[b - 1]
    return float(le[b - 1] + (le[b] - le[b - 1]) * (rank - cum[b - 1]) / inside)
# %%
check("18.2", histogram_quantile)
# %% [markdown] id="c30"
# **Exercise 18.3 (implement: the KS statistic of weighted samples).** A monitor that should notice drift soon
# can weigh recent requests more than old ones (say, a weight that halves every 50 requests), so each value comes
# with a weight. Write `weighted_ks(a, wa, b, wb)`: the two-sample Kolmogorov–Smirnov statistic
# $D = \max_x |F_a(x) - F_b(x)|$ of two weighted samples, where $F_a(x)$ is the share of sample `a`'s total
# weight that sits on values $\le x$ (`wa[i]` is the weight of `a[i]`; weights are ≥ 0 and not all 0). With
# every weight equal it is the ordinary statistic of the lesson's KS test; samples may contain ties.
# %% tags=["solution"]
def weighted_ks(a, wa, b, wb):
    a, wa = np.asarray(a, dtype=np.float64), np.asarray(wa, dtype=np.float64)
    b, wb = np.asarray(b, dtype=np.float64), np.asarray(wb, dtype=np.float64)
    x = np.concatenate([a, b])

    def cdf(values, weights):
        order = np.argsort(values)
        cum = np.concatenate([[0.0], np.cumsum(weights[order])]) / weights.sum()
        return cum[np.searchsorted(values[order], x, side="right")]
    return float(np.max(np.abs(cdf(a, wa) - cdf(b, wb))))
# %%
check("18.3", weighted_ks)
# %% [markdown] id="c33"
# **Exercise 18.4 (implement: a simplified micro-batching policy).** A simplified model of this lesson's
# batcher, in which model calls take no time, so the batcher is free whenever a request arrives. Given the arrival
# times of single-row requests (ms, in any order), return the list of batch sizes in time order. A batch starts
# with the first request not yet in a batch, and its wait starts when that request arrives: the batch takes each
# following request while it holds fewer than `max_batch` and the request arrives at most `max_wait_ms` after the
# batch's **first** request. Write `microbatches(arrivals_ms, max_batch, max_wait_ms)`.
#
# The service's batcher (`kit/serve/batching.py`) differs where model calls take time: while the model runs on one
# batch, new requests queue; when the worker is free again it takes the first waiting request, every request
# already queued joins at once (up to `max_batch`), and the wait counts from the moment the worker took that first
# request, not from its arrival. Under load its batches can therefore be larger than this model's.
# %% tags=["solution"]
def microbatches(arrivals_ms, max_batch, max_wait_ms):
    t = np.sort(np.asarray(arrivals_ms, dtype=np.float64))
    sizes, start = [], 0
    while start < len(t):
        end = start + 1
        while end < len(t) and end - start < max_batch and t[end] - t[start] <= max_wait_ms:
            end += 1
        sizes.append(end - start)
        start = end
    return sizes
# %%
check("18.4", microbatches)
