"""Serving and monitoring a model (lesson 18): an HTTP service over an ONNX Runtime session, a load test, drift.

* :mod:`app` — ``create_app(model.onnx)``: FastAPI with ``POST /predict``, ``GET /health``, ``GET /metrics``
  (Prometheus text), strict input checks (4xx, never a crash); :class:`ThreadServer` (uvicorn in a thread) and
  :class:`ServerProcess` (``python -m kit.serve`` in a subprocess), both context managers that always stop;
* :mod:`batching` — :class:`MicroBatcher`: dynamic micro-batching (max batch, max wait);
* :mod:`loadtest` — async clients (httpx) at a given concurrency, bounded in requests and seconds;
* :mod:`monitor` — input statistics, PSI and KS (scipy) against a reference window, alerts;

and for causal LMs (lesson 21):

* :mod:`engine` — :class:`~kit.serve.engine.Engine`: continuous batching (every running request's decode step in one
  model call, each row its own length in a :class:`~kit.models.gpt.SlotKVCache`; requests join and leave per step);
* :mod:`llm_app` — OpenAI-compatible routes (``/v1/chat/completions``, ``/v1/completions`` with SSE streaming,
  ``/v1/models``, ``/health``, ``/metrics``, a chat page at ``/``) and :class:`~kit.serve.llm_app.LLMServer`;
* :mod:`llm_load` — closed- and open-loop (Poisson) streaming load tests: TTFT, inter-token latency, tokens/s.

Layer: beside :mod:`kit.techniques` (layer 5: it may use data, models, train, viz and techniques); only
``kit.lessons`` (the ``kit serve`` verb) and the notebooks import it. The ONNX service imports no torch: its
ONNX Runtime session is :func:`kit.techniques.onnx_runtime.ort_session` (the one ``kit.techniques.export`` gives
lessons, without torch), so a server starts in about a second instead of waiting for torch.
"""
