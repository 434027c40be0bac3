"""MiniLM through the one-time ONNX export: unit vectors, meaning, padding does not change a vector."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.search.embeddings import DIMS, ONNX_NAME, Embedder


def test_vectors_are_normalised_and_mean_something(search_models_dir: Path) -> None:
    embedder = Embedder(search_models_dir, batch=4)
    texts = ["a dog running in the park", "a puppy playing outside", "quarterly stock market report", ""]
    v = embedder.embed(texts)
    assert v.shape == (4, DIMS) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v[:3], axis=1), 1.0, atol=1e-5)
    assert not v[3].any()  # empty text: a zero vector (never indexed as one)
    assert v[0] @ v[1] > 0.4 > v[0] @ v[2]
    assert (search_models_dir / ONNX_NAME).exists()


def test_a_text_embeds_the_same_alone_and_padded_in_a_batch(search_models_dir: Path) -> None:
    embedder = Embedder(search_models_dir)
    short = "cat"
    alone = embedder.embed([short])[0]
    batched = embedder.embed([short, "a much longer sentence that forces padding of the short one " * 3])[0]
    assert np.abs(alone - batched).max() < 1e-5
    assert embedder.embed_one(short) == tuple(float(x) for x in alone)
