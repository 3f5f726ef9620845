"""The embedded engine's speed: prefill and decode tokens/s, with llama.cpp's extra buffer types
(AMX tiles, weight repacking) off, as mcode loads models, and on, as llama.cpp would.

    python tests/bench/engine.py [--runs 3] [--prompt 512] [--gen 64] [--threads 1]
                                 [--requantize Q4_0,IQ4_NL] [--model PATH ...]

Rows: the embedded SmolLM2-135M-Instruct (Q4_1), each ``--model`` given, and each
``--requantize`` type made from the embedded model into a temp dir (llama.cpp's own quantizer:
the repack path serves Q4_0 and IQ4_NL, not Q4_1; AMX serves Q4_0, Q4_1 and Q8_0, not IQ4_NL).
Every measurement runs in a child process, so a native crash is a row ("crashed, signal 11"),
not the end of the table. Prefill: a fresh ``--prompt``-token prompt (nothing cached), timed
by the engine; decode: ``--gen`` greedy tokens after it. Median of ``--runs`` in one child,
after one untimed warm-up. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def child(model: str, extra_bufts: bool, threads: int, prompt: int, gen: int, runs: int) -> None:
    import asyncio

    from mcode.local_backend.chat_template import Segment
    from mcode.local_backend.llama_engine import Generated, LlamaEngine, Sampling

    engine = LlamaEngine(
        Path(model),
        n_ctx=prompt + gen + 64,
        n_threads=threads,
        extra_bufts=extra_bufts,
        check_in_child=False,
    )
    engine.load()
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while"]
    text = ""
    while engine.count_tokens(text) < prompt - 8:
        text += f" {words[len(text) % len(words)]}"

    async def once(i: int) -> Generated:
        # A different first token each run: nothing of the prompt is in the KV cache.
        prompt_text = [Segment(f"{i}{text}", False)]
        result = None
        async for item in engine.stream(prompt_text, Sampling(max_tokens=gen, temperature=0)):
            if isinstance(item, Generated):
                result = item
        assert result is not None
        return result

    async def go() -> None:
        await once(-1)
        done = [await once(i) for i in range(runs)]
        prefill = statistics.median(r.prompt_tokens / r.prefill_seconds for r in done)
        decode = statistics.median(
            r.completion_tokens / r.decode_seconds for r in done if r.completion_tokens
        )
        print(json.dumps({"prefill": prefill, "decode": decode, "load": engine.load_seconds}))

    asyncio.run(go())


def measure(model: Path, extra_bufts: bool, args: argparse.Namespace) -> str:
    cmd = [sys.executable, __file__, "--child", str(model), str(int(extra_bufts))]
    cmd += [str(args.threads), str(args.prompt), str(args.gen), str(args.runs)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        return f"crashed ({name}, signal {-proc.returncode}) | – | –"
    if proc.returncode != 0:
        return f"failed (exit {proc.returncode}: {proc.stderr.strip()[-120:]}) | – | –"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return f"ran | {out['prefill']:.0f} | {out['decode']:.1f}"


def requantize(source: Path, kind: str, folder: Path) -> Path:
    import llama_cpp

    out = folder / f"{source.stem.split('.')[0]}.{kind}.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind}")
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    # The quantizer logs every tensor on stderr: keep it off the table.
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            code = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    if code != 0:
        raise SystemExit(f"quantizing {source} to {kind} failed ({code})")
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        model, extra, threads, prompt, gen, runs = sys.argv[2:8]
        child(model, extra == "1", int(threads), int(prompt), int(gen), int(runs))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompt", type=int, default=512, help="prompt tokens")
    parser.add_argument("--gen", type=int, default=64, help="generated tokens")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--requantize", default="", help="e.g. Q4_0,IQ4_NL")
    parser.add_argument("--model", action="append", default=[], type=Path)
    args = parser.parse_args()

    from mcode.local_backend.embedded import embedded_model_path

    embedded = embedded_model_path()
    with tempfile.TemporaryDirectory(prefix="mcode-bench-engine-") as tmp:
        models = [embedded, *args.model]
        models += [requantize(embedded, k, Path(tmp)) for k in args.requantize.split(",") if k]
        flags = sorted(f for f in cpu_flags() if f.startswith(("amx", "avx512f", "avx2")))
        print(f"{cpu_name()}, {os.cpu_count()} CPUs, flags: {' '.join(flags) or '?'}; ")
        print(f"{args.threads} thread(s), {args.prompt}-token prompt, {args.gen} tokens decoded\n")
        print("| model | extra buffer types | result | prefill tok/s | decode tok/s |")
        print("| --- | --- | --- | ---: | ---: |")
        for model in models:
            for extra in (False, True):
                row = measure(model, extra, args)
                label = "on (llama.cpp default)" if extra else "off (mcode)"
                print(f"| {model.name} | {label} | {row} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
