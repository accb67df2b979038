"""The one small interface every backbone implements, and the registry that finds them.

A backbone turns frames of mono audio at its own rate into embeddings and, where it has a
classifier, raw logits in its own label order. Windowing, pooling, storage and resumption
live elsewhere, so a new backbone is one new module plus one line in `REGISTRY`.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod

import numpy as np

# name -> "module:Class"; modules are imported only when their model is asked for.
REGISTRY = {
    "birdnet": "birdemb.backbones.birdnet:BirdNET",
    "vocalization": "birdemb.backbones.vocalization:Vocalization",
    "encodec": "birdemb.backbones.encodec:EnCodec",
}


class BackboneError(Exception):
    """A model that cannot be loaded or run; the message says why."""


class Backbone(ABC):
    name: str
    version: str
    sample_rate: int
    frame_s: float
    embedding_dim: int
    labels: list[str] | None  # logit order; None for models without a classifier
    weights_sha256: str

    @abstractmethod
    def embed(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """frames [n, frame_s * sample_rate] float32 -> (embeddings [n, dim], logits [n, L] or None)."""

    def options(self) -> dict:
        """Settings that change the output (stored in the manifest, checked on resume)."""
        return {}

    def describe(self) -> dict:
        return {
            "model": self.name,
            "version": self.version,
            "weights_sha256": self.weights_sha256,
            "sample_rate": self.sample_rate,
            "frame_s": self.frame_s,
            "embedding_dim": self.embedding_dim,
            "n_labels": None if self.labels is None else len(self.labels),
            "options": self.options(),
        }


def backbone_names() -> list[str]:
    return sorted(REGISTRY)


def load_backbone(name: str, **kwargs) -> Backbone:
    """Build a backbone by name; kwargs are the model's own options (weights, threads, ...).

    A name of the form "package.module:Class" loads a backbone from outside birdemb.
    """
    if name not in REGISTRY and ":" not in name:
        raise BackboneError(f"unknown model {name!r}; choose one of {', '.join(backbone_names())}")
    module_name, class_name = REGISTRY.get(name, name).split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**kwargs)
