"""``python -m kit.serve MODEL [--host 127.0.0.1] [--port N]``: an ``.onnx`` file → the service of :mod:`kit.serve.app`;
a causal LM (``SmolLM2-135M-Instruct``, a ``.gguf`` file, a Hugging Face folder, or ``tiny``: a small random Llama for
trying the routes) → the OpenAI-compatible server of :mod:`kit.serve.llm_app` with continuous batching.
A --host other than loopback gets a warning on stderr: the service has no authentication."""
from __future__ import annotations

import argparse
import sys


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("model", help="an ONNX model file with input (batch, features), e.g. from kit.techniques.export; "
                    "or a causal LM: SmolLM2-135M-Instruct, a .gguf file, a Hugging Face folder, or tiny (random)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    ap.add_argument("--batching", action="store_true", help="dynamic micro-batching of concurrent requests")
    ap.add_argument("--max-batch", type=int, default=None,
                    help="ONNX micro-batching: rows per model call at most (default 64); LLM: requests decoded "
                         "together (default 8)")
    ap.add_argument("--max-wait-ms", type=float, default=2.0, help="micro-batching: longest wait for a batch to fill")
    ap.add_argument("--max-rows", type=int, default=256, help="largest batch one request may send (else 413)")
    ap.add_argument("--max-body", type=int, default=1_000_000, help="largest request body in bytes (else 413)")
    ap.add_argument("--timeout-keep-alive", type=float, default=5.0,
                    help="seconds before an idle connection is closed (default 5)")
    ap.add_argument("--timeout-read", type=float, default=10.0,
                    help="seconds a request's headers, and then its body, may take to arrive (default 10)")
    ap.add_argument("--limit-concurrency", type=int, default=512,
                    help="open connections at most; requests beyond get 503 (default 512)")
    ap.add_argument("--max-queue", type=int, default=64, help="LLM: requests allowed to wait for a row (then 429)")
    ap.add_argument("--max-context", type=int, default=2048, help="LLM: tokens per request, prompt + answer")
    ap.add_argument("--max-tokens", type=int, default=1024, help="LLM: the largest max_tokens a request may ask")
    ap.add_argument("--name", default=None, help="LLM: the model name clients send (default: the model argument)")
    ap.add_argument("--threads", type=int, default=None, help="LLM: torch CPU threads (default: torch's choice)")
    ap.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)  # stop when it ends


def run(args) -> int:
    """Check the arguments, then serve; one line on stderr and exit code 2 on bad input."""
    from pathlib import Path
    path = Path(args.model)
    if not args.model.endswith(".onnx") and (args.model.endswith(".gguf") or path.is_dir() or not path.exists()):
        return run_llm(args)    # a model name, a GGUF file or a Hugging Face folder
    args.max_batch = 64 if args.max_batch is None else args.max_batch
    problems = []
    if not Path(args.model).is_file():
        problems.append(f"no model file {args.model}")
    elif not args.model.endswith(".onnx"):
        problems.append(f"{args.model} is not an .onnx file (nor a .gguf LLM or a model folder)")
    if not 0 <= args.port <= 65535:
        problems.append(f"--port must be 0–65535, got {args.port}")
    if args.max_batch < 1 or args.max_wait_ms < 0 or args.max_rows < 1 or args.max_body < 1:
        problems.append("--max-batch, --max-rows and --max-body must be ≥ 1 and --max-wait-ms ≥ 0")
    if not (args.timeout_keep_alive > 0 and args.timeout_read > 0 and args.limit_concurrency >= 1):
        problems.append("--timeout-keep-alive and --timeout-read must be > 0 and --limit-concurrency ≥ 1")
    if problems:
        print(f"kit serve: {problems[0]}", file=sys.stderr)
        return 2
    from kit.serve.app import network_warning, serve
    if network_warning(args.host):
        print(network_warning(args.host), file=sys.stderr, flush=True)
    try:
        serve(args.model, args.host, args.port, batching=args.batching, max_batch=args.max_batch,
              max_wait_ms=args.max_wait_ms, max_batch_rows=args.max_rows, max_body_bytes=args.max_body,
              parent_pid=args.parent_pid, keep_alive=args.timeout_keep_alive, read_timeout=args.timeout_read,
              limit_concurrency=args.limit_concurrency)
    except (OSError, ValueError) as e:  # port in use, address not local, a model that is not (batch, features)
        print(f"kit serve: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - e.g. ONNX Runtime refusing the file: one line, no traceback
        print(f"kit serve: cannot serve {args.model}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
              file=sys.stderr)
        return 2
    return 0


def run_llm(args) -> int:
    """Load a causal LM and serve it with the OpenAI-compatible routes; one line on stderr, exit 2, on bad input."""
    from kit.data import DataError
    from kit.serve.app import network_warning, run_app
    max_batch = 8 if args.max_batch is None else args.max_batch
    if not 0 <= args.port <= 65535:
        print(f"kit serve: --port must be 0–65535, got {args.port}", file=sys.stderr)
        return 2
    if max_batch < 1 or args.max_queue < 0 or args.max_context < 2 or args.max_tokens < 1:
        print("kit serve: --max-batch, --max-tokens must be ≥ 1, --max-queue ≥ 0 and --max-context ≥ 2", file=sys.stderr)
        return 2
    if network_warning(args.host):
        print(network_warning(args.host), file=sys.stderr, flush=True)
    try:
        import torch

        from kit.models.llm import load_llm, stand_in
        from kit.serve.engine import Engine
        from kit.serve.llm_app import create_llm_app
        if args.threads:
            torch.set_num_threads(args.threads)
        model, tok = stand_in() if args.model == "tiny" else load_llm(args.model, verbose=True)
        name = args.name or args.model
        engine = Engine(model, tok, max_batch=max_batch, max_queue=args.max_queue, max_context=args.max_context)
        app = create_llm_app(engine, name, max_tokens_cap=args.max_tokens)
        run_app(app, f"{name} listening on {{url}} (POST /v1/chat/completions, /v1/completions; GET /v1/models, "
                "/health, /metrics, / for a chat page)", args.host, args.port, args.parent_pid,
                keep_alive=args.timeout_keep_alive, limit_concurrency=args.limit_concurrency)
    except (DataError, OSError, ValueError) as e:   # no such model, port in use, …
        print(f"kit serve: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kit serve", description=__doc__)
    add_arguments(ap)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
