"""Which engine runs a local model: the one place ``mcode serve`` and the in-process ``local``
provider make one.

    llama_cpp ... llama.cpp in-process (:mod:`.llama_engine`), any GGUF
    torch ....... our own decoder (:mod:`.torch_engine`), a GGUF dequantised or a Hugging Face
                  folder (safetensors, tokenizer.json); attention ``dense``
                  or ``msa`` (every layer, or one entry per layer), on CUDA when there is one

Nothing heavy is imported here: each engine loads its runtime on ``load``. What is missing (a
package, the model file) is a ConfigError now, before anything loads.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mcode.errors import ConfigError

from .embedded import check_model_file, check_model_folder, require_llama_cpp
from .engine import Engine

ENGINES = ("llama_cpp", "torch")


def build_engine(
    kind: str,
    path: Path,
    *,
    model_id: str,
    n_ctx: int,
    threads: int | None = None,
    attention: str = "dense",
    seed: int = 0,
    data_dir: Path | None = None,
) -> Engine:
    """The engine ``kind`` over the GGUF at ``path`` (for ``torch``, or a Hugging Face model
    folder), served as ``model_id``. ``attention`` is the torch engine's; ``seed`` and
    ``data_dir`` (where the crash probe keeps its verdicts) llama.cpp's. Raises ConfigError
    saying what is missing or wrong."""
    if kind not in ENGINES:
        raise ConfigError(
            f"unknown local engine {kind!r}", hint=f"use one of: {', '.join(ENGINES)}"
        )
    if path.expanduser().is_dir():
        if kind != "torch":
            raise ConfigError(
                f"{path} is a model folder; llama.cpp runs .gguf files",
                hint="serve a Hugging Face safetensors folder with --engine torch "
                '([local] engine = "torch"), or pass a .gguf',
            )
        # Its tokenizer.json tokenizes; llama.cpp is wanted only for tool grammars.
        path = check_model_folder(path)
    else:
        require_llama_cpp()  # the torch engine tokenizes a GGUF with llama.cpp too
        path = check_model_file(path)
    if kind == "llama_cpp":
        from .llama_engine import LlamaEngine

        return LlamaEngine(
            path, n_ctx=n_ctx, n_threads=threads, seed=seed, data_dir=data_dir, model_id=model_id
        )
    needs = ("torch", "gguf", "safetensors", "tokenizers") if path.is_dir() else ("torch", "gguf")
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"the torch engine needs {' and '.join(missing)}, which this install lacks",
            hint="run: pip install 'mcode[torch]' — or use the llama_cpp engine",
        )
    from .torch_engine import TorchEngine

    return TorchEngine(
        path, n_ctx=n_ctx, threads=threads, attention=attention, device="auto", model_id=model_id
    )
