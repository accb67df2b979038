"""The one interface every backbone implements, and the registry that finds them.

A backbone turns frames of mono audio at its own rate into embeddings and, where it has a
classifier, raw logits in its own label order. It also tells the later stages what they need
without naming a model: the .tflite a bundle ships and where its logits are in it (for
heads that add them), where it can a fused backbone + head graph (deploy), and its own
extract options (the command line). Windowing, pooling, storage and resumption live elsewhere, so a new backbone
is one new module plus one line in `REGISTRY`; one outside birdemb is named "module:Class".
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from birdemb.errors import BirdembError
from birdemb.runtime.allocator import keep_freed_memory

# name -> "module:Class"; modules are imported only when their model is asked for.
REGISTRY = {
    "birdnet": "birdemb.backbones.birdnet:BirdNET",
    "vocalization": "birdemb.backbones.vocalization:Vocalization",
    "encodec": "birdemb.backbones.encodec:EnCodec",
}


class BackboneError(BirdembError):
    """A model that cannot be loaded or run; the message says why."""


@dataclass(frozen=True)
class CliOption:
    """One backbone-specific `extract` option: `flag` on the command line, `keyword` in the
    backbone's constructor. Given only when the user sets it, so defaults stay the model's."""

    flag: str
    keyword: str
    help: str
    type: type = str
    choices: tuple | None = None
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


class Backbone(ABC):
    name: str
    version: str
    sample_rate: int
    frame_s: float
    embedding_dim: int
    labels: list[str] | None  # logit order; None for models without a classifier
    weights_sha256: str
    cli_options: tuple[CliOption, ...] = ()
    can_fuse: bool = False  # export_fused() can build backbone + head as one graph

    @abstractmethod
    def embed(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """frames [n, frame_s * sample_rate] float32 -> (embeddings [n, dim], logits [n, L] or None)."""

    def options(self) -> dict:
        """Settings that change the output (stored in the manifest, checked on resume)."""
        return {}

    @property
    def tflite_file(self) -> Path | None:
        """A .tflite of this backbone with the embedding among its outputs (what a bundle
        ships and the submission runs); None when the backbone has none."""
        return None

    @property
    def tflite_split(self) -> tuple[Path, Path] | None:
        """(front end .npz, network .tflite): tflite_file run as a numpy spectrogram front end
        and the graph after it (birdemb.runtime.front_end), same outputs; None to run it whole."""
        return None

    def tflite_logits(self) -> tuple[int, np.ndarray]:
        """(width of the .tflite's logits output, the column in it of each of `labels`, -1
        where it has none): how inference finds the stored logits a residual head adds."""
        return len(self.labels or ()), np.arange(len(self.labels or ()))

    def export_fused(self, head, n_samples: int) -> bytes:
        """Backbone + head (a runtime.head.HeadWeights, residual columns in the .tflite's logits
        output) + sigmoid as one TFLite graph: frames [n, n_samples] in, probabilities out.
        Only where `can_fuse`."""
        raise BackboneError(f"{self.name} cannot export a fused graph (its source graph is not available)")

    @classmethod
    def options_from_args(cls, args) -> dict:
        """This backbone's constructor keywords from parsed `extract` arguments (given ones only)."""
        given = {option.keyword: getattr(args, option.dest, None) for option in cls.cli_options}
        return {key: value for key, value in given.items() if value is not None}

    def describe(self) -> dict:
        return {
            "model": self.name,
            "entry": f"{type(self).__module__}:{type(self).__qualname__}",
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


def backbone_class(name: str) -> type[Backbone]:
    """The class for a registered name, or for "package.module:Class" (a backbone outside birdemb)."""
    if name not in REGISTRY and ":" not in name:
        raise BackboneError(f"unknown model {name!r}; choose one of {', '.join(backbone_names())} "
                            "(or name a class outside birdemb as package.module:Class)")
    module_name, class_name = REGISTRY.get(name, name).split(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise BackboneError(f"cannot load backbone {name!r}: {error}") from None
    if not (isinstance(cls, type) and issubclass(cls, Backbone)):
        raise BackboneError(f"{name!r} is not a Backbone class")
    return cls


def registered_classes() -> list[type[Backbone]]:
    return [backbone_class(name) for name in backbone_names()]


def load_backbone(name: str, **kwargs) -> Backbone:
    """Build a backbone by name; kwargs are the model's own options (weights, threads, ...)."""
    keep_freed_memory()  # a model's batches reuse each other's pages (runtime.allocator): EnCodec's too
    return backbone_class(name)(**kwargs)


def load_described(described: dict, weights: str | Path | None = None, recorded: str = "the store was made with",
                   **kwargs) -> Backbone:
    """The backbone a manifest or run describes (`model`, `entry`, `options`), with the same
    options, checked to be the very weights recorded there (`recorded` says where, for the error)."""
    name = described["model"]
    if name not in REGISTRY and described.get("entry"):
        name = described["entry"]
    options = {**(described.get("options") or {}), **kwargs}
    backbone = load_backbone(name, weights=weights or described.get("weights"), **options)
    expected = described.get("weights_sha256")
    if expected and backbone.weights_sha256 != expected:
        raise BackboneError(
            f"{described['model']} weights {backbone.weights_sha256[:12]}... are not the ones {recorded} "
            f"({expected[:12]}...); pass `weights` with the original weights"
        )
    return backbone
