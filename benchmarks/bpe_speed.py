"""Byte-level BPE: kit's from-scratch tokenizer against the `tokenizers` library (Rust), same corpus, same files.

Training: both learn merges for each vocabulary size on the first ``--chars`` characters of tiny-shakespeare
(the merges differ where pair counts tie: each library breaks ties its own way). Encoding: both encode the
whole corpus with the **same** vocab.json + merges.txt (kit's), so the ids are identical (checked here too).
Median of ``--repeats`` runs; single-threaded tokenizers (RAYON_NUM_THREADS=1) and also its default.

    python benchmarks/bpe_speed.py [--vocab 512,2048,8192] [--chars 1115394] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _median(f, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _hf_seconds(kind: str, text_path: str, folder: str, vocab: int, threads: str | None) -> float:
    """The tokenizers library timed in a child process (RAYON_NUM_THREADS is read once, at its start)."""
    code = f"""
import time
from tokenizers import ByteLevelBPETokenizer
text = open({text_path!r}, encoding="utf-8").read()
t0 = time.perf_counter()
if {kind!r} == "train":
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator([text], vocab_size={vocab}, min_frequency=1, special_tokens=["<|endoftext|>"], show_progress=False)
else:
    tok = ByteLevelBPETokenizer({folder!r} + "/vocab.json", {folder!r} + "/merges.txt")
    ids = tok.encode(text).ids
print(time.perf_counter() - t0)
"""
    env = dict(os.environ)
    if threads:
        env["RAYON_NUM_THREADS"] = threads
    return float(subprocess.check_output([sys.executable, "-c", code], env=env, text=True).strip())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", default="512,2048,8192")
    ap.add_argument("--chars", type=int, default=1_115_394)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from tokenizers import ByteLevelBPETokenizer

    from kit.data.bpe import ByteLevelBPE
    from kit.data.datasets import _tinyshakespeare_embedded
    text = _tinyshakespeare_embedded().text[:args.chars]
    print(f"BPE on tiny-shakespeare ({len(text):,} characters, {len(text.encode()):,} bytes); median of "
          f"{args.repeats}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"{'vocab':>6}  {'what':<10} {'kit (Python)':>13} {'tokenizers 1 thread':>20} {'tokenizers default':>19}  "
          f"{'ratio (1 thread)':>16}  same ids")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.txt"
        path.write_text(text, encoding="utf-8")
        for vocab in (int(v) for v in args.vocab.split(",")):
            t_train, bpe = _median(lambda: ByteLevelBPE.train(text, vocab), args.repeats)
            folder = str(bpe.save(Path(tmp) / f"v{vocab}"))
            hf1 = statistics.median(_hf_seconds("train", str(path), folder, vocab, "1") for _ in range(args.repeats))
            hfn = statistics.median(_hf_seconds("train", str(path), folder, vocab, None) for _ in range(args.repeats))
            print(f"{vocab:>6}  {'train':<10} {t_train:>12.2f}s {hf1:>19.2f}s {hfn:>18.2f}s  {t_train / hf1:>15.0f}×")

            def enc():
                fresh = ByteLevelBPE.from_pretrained(folder)  # an empty cache: every word encoded once
                return fresh.encode(text)
            t_enc, ids = _median(enc, args.repeats)
            ref = ByteLevelBPETokenizer(folder + "/vocab.json", folder + "/merges.txt").encode(text).ids
            hf1 = statistics.median(_hf_seconds("encode", str(path), folder, vocab, "1") for _ in range(args.repeats))
            hfn = statistics.median(_hf_seconds("encode", str(path), folder, vocab, None) for _ in range(args.repeats))
            print(f"{vocab:>6}  {'encode':<10} {t_enc:>12.2f}s {hf1:>19.2f}s {hfn:>18.2f}s  {t_enc / hf1:>15.0f}×  "
                  f"{'yes' if ids == ref else 'NO'} ({len(ids):,} tokens, {len(text.encode()) / len(ids):.2f} bytes/token)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
