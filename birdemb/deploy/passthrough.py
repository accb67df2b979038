"""The passthrough (the paper's baseline): the surrogate's own probabilities for a species
list, as a bundle whose head needs no training.

A residual head with zero weights IS the backbone (runtime/head.py): for species j that the
backbone names in logit column c, logit_j = 0 . x + 0 + logits[c], frames pooled by max as the
store keeps them; for a species it lacks, the bias UNKNOWN_LOGIT, which the one sigmoid clips
to the value it gives -inf (about 1.8e-35: "0", as `select_logits` + sigmoid give). So
`submit`, the fused graph and the Kaggle script run it unchanged.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from birdemb import __version__
from birdemb.backbones import BackboneError, load_backbone
from birdemb.deploy.bundle import BundleError, passthrough_entry, write_bundle
from birdemb.labels.mapping import TAXONOMY_FILE
from birdemb.labels.species import (
    SpeciesError,
    label_index,
    mapping_report,
    read_species_list,
    read_taxonomy,
    species_from_metadata,
)
from birdemb.runtime.audio import WindowLayout
from birdemb.runtime.head import HeadWeights

UNKNOWN_LOGIT = -1.0e4  # below the sigmoid's clip: a species the backbone lacks scores sigmoid(-inf)


def species_from_file(path: str | Path) -> list[str]:
    """A species list as birdemb reads one: a train_metadata.csv (its primary labels, sorted),
    a sample_submission.csv (its columns after row_id), a JSON list or a text file."""
    path = Path(path)
    if path.suffix == ".csv" and path.is_file():
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
        if "primary_label" in header:
            return species_from_metadata(path)
    return read_species_list(path)


def passthrough_head(labels: list[str], species: list[str], taxonomy: dict | None, embedding_dim: int) -> HeadWeights:
    """Zero weights, and per species the backbone's logit column (label_index, the one mapping)."""
    index = label_index(labels, species, taxonomy)
    weight = np.zeros((len(species), embedding_dim), dtype=np.float32)
    bias = np.where(index >= 0, 0.0, UNKNOWN_LOGIT).astype(np.float32)
    return HeadWeights([(weight, bias)], index)


def build_passthrough_bundle(model: str, species_file: str | Path, out: str | Path, taxonomy: str | Path | None = None,
                             weights: str | Path | None = None, fused: bool | None = None,
                             overwrite: bool = False) -> tuple[Path, str]:
    """A bundle that scores `model`'s own probabilities for the species of `species_file`;
    BirdNET's scientific names go through the eBird taxonomy (`taxonomy`, else
    eBird_Taxonomy_v2021.csv beside the species file). Returns (bundle, mapping report)."""
    species = species_from_file(species_file)
    beside = Path(species_file).parent / TAXONOMY_FILE
    taxonomy = taxonomy or (beside if beside.is_file() else None)
    taxonomy_map = read_taxonomy(taxonomy) if taxonomy else None
    try:
        backbone = load_backbone(model, weights=weights, threads=1)
    except BackboneError as error:
        raise BundleError(str(error)) from None
    if not backbone.labels:
        raise BundleError(f"{backbone.name} has no classifier: there are no probabilities to pass through")
    if backbone.tflite_file is None:
        raise BundleError(f"{backbone.name} has no .tflite graph, so it cannot run in a bundle")
    layout = WindowLayout(5.0, backbone.frame_s or 5.0, backbone.sample_rate, 1.0)
    passthrough = passthrough_entry(backbone, backbone.tflite_file, layout.frame_samples, species, taxonomy_map)
    if "missing" in passthrough:
        raise SpeciesError(f"{species_file}: {passthrough['missing']} (give `taxonomy`)")
    head = passthrough_head(backbone.labels, species, taxonomy_map, backbone.embedding_dim)
    if not head.uses_backbone_logits:
        raise SpeciesError(f"{species_file}: none of its {len(species)} species is among {backbone.name}'s labels")
    report = mapping_report(head.residual, species)
    config = {
        "passthrough": True,
        "embeddings": backbone.name,
        "surrogate": backbone.name,
        "layout": layout.describe(),
        "backbone": backbone.describe(),
        "species_file": str(Path(species_file).resolve()),
        "taxonomy": str(Path(taxonomy).resolve()) if taxonomy else None,
        "n_species": len(species),
        "mapping": {"matched": int((head.residual >= 0).sum()), "species": len(species),
                    "missing": [s for s, i in zip(species, head.residual) if i < 0], "report": report},
        "code_version": __version__,
    }
    bundle = write_bundle(config, species, head, backbone, out, f"passthrough of {backbone.name}", passthrough,
                          fused, overwrite)
    return bundle, report
