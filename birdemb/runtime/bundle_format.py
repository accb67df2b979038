"""The bundle format as inference reads it: BUNDLE/bundle.json names the backbone .tflite
(which output is the embedding, and the logits for heads that add them), the head, the
species list and THE window layout, with the sha256 of every file; `passthrough` names each
species' column of the backbone's logits (the surrogate's own probabilities, for `--blend`).
Built by birdemb.deploy.bundle; read here with nothing heavier than the standard library."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from birdemb.errors import BirdembError
from birdemb.runtime.audio import WindowLayout
from birdemb.runtime.hashing import sha256_file

BUNDLE_MANIFEST = "bundle.json"
BUNDLE_FORMAT = "birdemb-bundle"


class SubmitError(BirdembError):
    """A bundle or option that cannot produce a submission; the message says why."""


@dataclass(frozen=True)
class Bundle:
    """What inference needs, with absolute paths (picklable, sent to worker processes)."""

    root: str
    species: tuple[str, ...]
    layout: WindowLayout
    backbone_file: str
    embedding_output: int  # index of the backbone's embedding among its outputs
    head_file: str
    fused_file: str | None = None  # backbone + head + sigmoid in one graph, if exported
    model: str = ""
    logits_output: int | None = None  # index of the backbone's logits among its outputs (residual heads)
    logit_columns: tuple[int, ...] | None = None  # stored label -> column of that output (None: the same)
    # passthrough (the backbone's own probabilities for the species, for `--blend`): the logits
    # output and, per species, its column there (-1: the backbone lacks the species)
    passthrough_output: int | None = None
    passthrough_columns: tuple[int, ...] | None = None
    passthrough_missing: str = ""  # why a bundle has no passthrough columns
    # the backbone run split (birdemb.runtime.front_end): (its numpy front end's constants, the
    # graph after it), used instead of backbone_file; None: run backbone_file whole
    split: tuple[str, str] | None = None


def layout_from_dict(values: dict) -> WindowLayout:
    """Rebuild THE window layout from a store manifest's / run config's `layout` dict, and
    refuse one whose frame offsets no longer match (the layout code changed since)."""
    layout = WindowLayout(
        window_s=float(values["window_s"]),
        frame_s=float(values["frame_s"]),
        sample_rate=int(values["sample_rate"]),
        min_audio_s=float(values.get("min_audio_s", 1.0)),
        hop_s=None if values.get("hop_s") is None else float(values["hop_s"]),
        frame_grid=str(values.get("frame_grid", "cover")),
    )
    stored = values.get("frame_offsets_s")
    if stored is not None and [round(float(o), 6) for o in stored] != layout.frame_offsets_s:
        raise SubmitError(f"layout frame offsets {stored} differ from today's {layout.frame_offsets_s}")
    return layout


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read BUNDLE/bundle.json; with `verify`, check every listed file against its sha256."""
    root = Path(path).resolve()
    manifest_path = root / BUNDLE_MANIFEST
    if not manifest_path.is_file():
        raise SubmitError(f"{root}: not a bundle (no {BUNDLE_MANIFEST}; make one with `birdemb bundle`)")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != BUNDLE_FORMAT:
        raise SubmitError(f"{manifest_path}: format {manifest.get('format')!r} is not {BUNDLE_FORMAT!r}")
    if verify:
        for name, digest in manifest["files"].items():
            file = root / name
            if not file.is_file():
                raise SubmitError(f"{root}: bundle file {name} is missing")
            if sha256_file(file) != digest:
                raise SubmitError(f"{root}: {name} does not match its sha256 in {BUNDLE_MANIFEST} (corrupt copy?)")
    species = json.loads((root / manifest["species"]).read_text())
    fused = manifest.get("fused")
    passthrough = manifest.get("passthrough") or {}
    front_end, network = manifest["backbone"].get("front_end"), manifest["backbone"].get("network")
    return Bundle(
        root=str(root),
        species=tuple(species),
        layout=layout_from_dict(manifest["layout"]),
        backbone_file=str(root / manifest["backbone"]["file"]),
        embedding_output=int(manifest["backbone"]["embedding_output"]),
        head_file=str(root / manifest["head"]),
        fused_file=str(root / fused) if fused else None,
        model=manifest["backbone"].get("model", ""),
        logits_output=manifest["backbone"].get("logits_output"),
        logit_columns=_columns(manifest["backbone"].get("logit_columns")),
        passthrough_output=passthrough.get("logits_output"),
        passthrough_columns=_columns(passthrough.get("columns")),
        passthrough_missing=passthrough.get("missing") or "made before bundles recorded passthrough columns",
        split=(str(root / front_end), str(root / network)) if front_end and network else None,
    )


def _columns(values) -> tuple[int, ...] | None:
    return None if values is None else tuple(int(v) for v in values)


def open_bundles(bundle_or_run, opener=load_bundle) -> list[Bundle]:
    """One source or a list (an ensemble) as Bundles: loaded ones kept, paths opened with
    `opener` (load_bundle here; birdemb.deploy also opens run directories)."""
    sources = bundle_or_run if isinstance(bundle_or_run, (list, tuple)) else [bundle_or_run]
    return [s if isinstance(s, Bundle) else opener(s) for s in sources]
