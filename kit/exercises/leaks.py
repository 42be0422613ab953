"""Finding answers a learner could copy: values in the notebook's namespace, and functions — the notebook's own,
kit's (public or private, module functions or methods of kit objects in the namespace) and a few common libraries' —
that pass an exercise directly or through a **thin wrapper**: arguments reordered, a keyword left at its default, or
the result indexed (``[0]``, ``["key"]``), summed over the last axis, its ``.statistic`` or its softmax taken.

Each candidate × wrapper is tried first on one case (cheap); only a match is run through the full check.
"""
from __future__ import annotations

import copy
import inspect
import io
import itertools
import types
from contextlib import contextmanager, redirect_stderr, redirect_stdout

from kit.exercises import Case, Outcome, compare, exercises

LIBRARIES = ("torch.nn.functional", "scipy.stats", "sklearn.metrics")  # common one-call answers
SLOW = ("multiscale_graphcorr", "permutation_test", "bootstrap", "monte_carlo_test", "power",  # resampling: minutes
        "wilcoxon", "cramervonmises_2samp",  # exact null distributions: a minute on an image-sized input
        "stats.moment")  # scipy.stats.moment loops forever when its order is infinite (a histogram's +Inf bound)


def _softmax(r):
    import torch
    return torch.softmax(torch.as_tensor(r), -1)


RESULTS = [("", lambda r: r), ("[0]", lambda r: r[0]), ("[1]", lambda r: r[1]), (".statistic", lambda r: r.statistic),
           (".sum(-1)", lambda r: r.sum(-1)), ("softmax(…)", _softmax)]


def _plain_values(namespace: dict):
    for name, v in namespace.items():
        if name.startswith("_") and name != "_":
            continue
        if isinstance(v, (int, float, complex)) and not isinstance(v, bool):
            yield name, v
        elif hasattr(v, "shape") and hasattr(v, "dtype") and getattr(v, "size", None) is not None:
            yield name, v
        elif isinstance(v, (list, tuple)) and 0 < len(v) <= 10_000 and all(isinstance(x, (int, float)) for x in v):
            yield name, v


def _module_functions(module, prefix: str):
    """The functions ``module`` defines (not those it imports: kit.viz's ``make_subplots`` is plotly's)."""
    home = module.__name__.split(".")[0]
    for attr, f in list(vars(module).items()):
        if isinstance(f, (types.FunctionType, types.BuiltinFunctionType)) and not attr.startswith("__") and \
                str(getattr(f, "__module__", "") or "").split(".")[0] in (home, "_" + home):
            yield f"{prefix}.{attr}", f


UNSAFE = ("IPython", "ipykernel", "ipywidgets", "plotly", "tqdm", "matplotlib", "builtins", "os", "sys", "shutil",
          "subprocess", "socket", "pathlib", "nbformat", "papermill")  # functions that act on the kernel or the machine


def _side_effects(fn) -> bool:
    """True for a function from a module that talks to the frontend or the machine (IPython's ``display`` called with
    arbitrary arguments crashed the notebook client): never a candidate answer."""
    module = str(getattr(fn, "__module__", "") or getattr(getattr(fn, "__self__", None), "__module__", "") or "")
    return module.split(".")[0] in UNSAFE


def _candidate_functions(namespace: dict):
    """Functions in the namespace; every function of the kit modules bound in it (private ones too); the methods of
    kit objects in it; the functions of :data:`LIBRARIES`."""
    import importlib
    import sys
    seen = set()

    def new(f):
        key = id(getattr(f, "__func__", f)), id(getattr(f, "__self__", None))
        if key in seen:
            return False
        seen.add(key)
        return True

    for name, v in list(namespace.items()):
        if name.startswith("_"):
            continue
        if isinstance(v, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
            if new(v) and not _side_effects(v):
                yield name, v
        elif isinstance(v, types.ModuleType) and v.__name__.startswith("kit.") and \
                not v.__name__.startswith("kit.exercises"):
            for label, f in _module_functions(v, name):
                if new(f):
                    yield label, f
        elif type(v).__module__.startswith("kit.") and not isinstance(v, type):
            for attr in dir(type(v)):
                if attr.startswith("__"):
                    continue
                try:
                    f = getattr(v, attr)
                except Exception:  # noqa: BLE001 - a property that fails is no candidate
                    continue
                if isinstance(f, types.MethodType) and new(f):
                    yield f"{name}.{attr}", f
    for modname in LIBRARIES:
        try:
            mod = sys.modules.get(modname) or importlib.import_module(modname)
        except ImportError:
            continue
        for label, f in _module_functions(mod, modname):
            if new(f) and not any(word in label for word in SLOW):
                yield label, f


def _arguments(fn, case: Case):
    """``(label, call)`` for each way ``fn`` takes the case's arguments: in their order or reordered (at most 24
    orders), keywords kept or left at their defaults, or passed by name to its parameters (keyword-only ones too);
    ``call(args, kwargs)`` calls ``fn`` that way."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    n = len(case.args)
    orders = list(itertools.permutations(range(n))) if n <= 4 else [tuple(range(n))]
    for order in orders:
        for drop in ((False, True) if case.kwargs else (False,)):
            try:
                sig.bind(*[case.args[i] for i in order], **({} if drop else case.kwargs))
            except TypeError:
                continue
            label = "" if order == tuple(range(n)) else f" with arguments reordered {order}"
            yield label + (" without its keywords" if drop else ""), \
                lambda a, k, order=order, drop=drop: fn(*[a[i] for i in order], **({} if drop else k))
    names = [p.name for p in sig.parameters.values() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.KEYWORD_ONLY for p in sig.parameters.values()) and 0 < n <= len(names):
        for chosen in itertools.islice(itertools.permutations(names, n), 24):
            try:
                sig.bind(**dict(zip(chosen, case.args)))
            except TypeError:
                continue
            yield f" with {', '.join(f'{c}=' for c in chosen)}", \
                lambda a, k, chosen=chosen: fn(**dict(zip(chosen, a)))


def _quietly(fn):
    """``fn()`` with its output swallowed; an exception becomes ``None``-like failure (a failing candidate is no leak).
    No timer signal: a SIGALRM inside a Jupyter kernel can reach a thread in the middle of a ZeroMQ call."""
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            return True, fn()
    except Exception:  # noqa: BLE001
        return False, None


@contextmanager
def _memory_cap(extra: int = 4 * 2 ** 30):
    """Cap this process's address space at its present size + ``extra`` while candidates run (Linux): a candidate
    that would allocate without bound (an integer argument taken as a size) fails instead of exhausting the machine."""
    try:
        import resource
        size = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
        old = resource.getrlimit(resource.RLIMIT_AS)
        cap = size + extra if old[1] == resource.RLIM_INFINITY else min(size + extra, old[1])
        resource.setrlimit(resource.RLIMIT_AS, (cap, old[1]))
    except (ImportError, OSError, ValueError, StopIteration):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


def _wrap(call, adapt):
    def wrapper(*args, **kwargs):
        return adapt(call(args, kwargs))
    return wrapper


def find_leaks(namespace: dict, lesson: str) -> list[str]:
    with _memory_cap():
        return _find_leaks(namespace, lesson)


def _find_leaks(namespace: dict, lesson: str) -> list[str]:
    """Names in a notebook's namespace (or thin wrappers of them) that would pass one of ``lesson``'s exercises.

    Value exercises: any number/array/tensor (or list of numbers) equal to the expected value. Function exercises:
    every candidate of :func:`_candidate_functions` under every wrapper of :func:`_arguments` × :data:`RESULTS`.
    Property exercises are judged on the learner's own answer and are skipped.
    """
    import os
    import time
    leaks = []
    log = open(os.environ["KIT_LEAKS_LOG"], "a") if os.environ.get("KIT_LEAKS_LOG") else None  # which candidate hangs
    for ex in exercises(lesson):
        if ex.kind == "value":
            want = ex.probe()
            for name, v in _plain_values(namespace):
                if _quietly(lambda: compare(v, want, 1e-6, 1e-5)) == (True, None):
                    leaks.append(f"{name} holds the answer to {ex.id}")
        elif ex.kind == "function":
            case = ex.arity()
            for name, fn in _candidate_functions(namespace):
                if log:
                    print(f"{time.perf_counter():.2f}", ex.id, name, file=log, flush=True)
                for how, call in _arguments(fn, case):
                    ok, got = _quietly(lambda: call(copy.deepcopy(case.args), copy.deepcopy(case.kwargs)))
                    if not ok:
                        continue
                    for what, adapt in RESULTS + [(f"[{k!r}]", lambda r, k=k: r[k]) for k in
                                                  (list(got)[:8] if isinstance(got, dict) else [])]:
                        ok, value = _quietly(lambda: adapt(got))
                        if not ok or _quietly(lambda: ex.assess([case], [Outcome(value)])) != (True, None):
                            continue
                        if _quietly(lambda: ex.judge(_wrap(call, adapt))) == (True, None):
                            wrapped = f"{name}(…){what}" if what else name
                            leaks.append(f"{wrapped}{how} passes {ex.id}")
                            break
    return leaks
