"""Keep only the species expected at a recording's place and week (BirdNET's location model),
for any labels matched by scientific name: BirdNET's own ("Scientific name_Common name"),
eBird codes (Perch, a competition's species) through the eBird taxonomy.

Labels whose scientific name cannot be found are kept, and counted (`unmatched`): filtering
must never silently drop a species it knows nothing about. `birds_only` drops the labels whose
scientific name the eBird taxonomy (which lists birds only) does not hold, and BirdNET's
non-species classes (engine, dog, human vocal, ...).

A place comes from the command line (`--lat --lon --week`) or per recording from a metadata
CSV with `latitude` and `longitude` columns (BirdCLEF's train_metadata.csv has them), matched
on `filename` (or `file`), with an optional `week` or `date` (YYYY-MM-DD) column.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from birdemb.backbones.birdnet_location import ALL_YEAR, DEFAULT_THRESHOLD, LocationModel, check_place
from birdemb.errors import UsageError
from birdemb.labels.species import is_birdnet_label, is_non_event_label


@dataclass(frozen=True)
class Place:
    lat: float
    lon: float
    week: int = ALL_YEAR


def birdnet_week(date: str) -> int:
    """BirdNET's week (1-48, four per month) of a YYYY-MM-DD date: days 1-7 are the month's
    first week, 8-14 the second, 15-21 the third, the rest the fourth."""
    try:
        _, month, day = (int(part) for part in date.strip()[:10].split("-"))
    except ValueError:
        raise UsageError(f"date {date!r} is not YYYY-MM-DD") from None
    if not (1 <= month <= 12 and 1 <= day <= 31):
        raise UsageError(f"date {date!r} is not a calendar date")
    return (month - 1) * 4 + min(4, math.ceil(day / 7))


def label_scientific_names(labels: list[str], taxonomy: dict | None = None) -> list[str | None]:
    """Each label's scientific name in lower case (None where unknown): BirdNET labels carry
    it; other labels are taken as eBird codes and looked up in the taxonomy."""
    by_code = {}
    for name, codes in (taxonomy or {}).items():
        for code in (codes,) if isinstance(codes, str) else codes:
            by_code.setdefault(code, name)
    names: list[str | None] = []
    for label in labels:
        if is_non_event_label(label):
            names.append(None)
        elif is_birdnet_label(label):
            names.append(label.split("_", 1)[0].strip().lower())
        else:
            names.append(by_code.get(label.strip()))
    return names


class LocationFilter:
    """Masks over `labels` for places and weeks, each place's mask computed once."""

    def __init__(self, labels: list[str], taxonomy: dict | None = None, threshold: float = DEFAULT_THRESHOLD,
                 birds_only: bool = False, model_dir: str | Path | None = None):
        if birds_only and not taxonomy:
            raise UsageError("`birds_only` needs the eBird taxonomy (`taxonomy`), which lists the birds")
        check_place(0.0, 0.0, ALL_YEAR, threshold)
        self.labels, self.threshold = list(labels), threshold
        self.model = LocationModel(model_dir)
        self._model_names = [label.split("_", 1)[0].strip().lower() for label in self.model.labels]
        known = set(self._model_names)
        # a name the location model does not list (another taxonomy's spelling, a non-BirdNET
        # species) is as unknown as no name: kept and counted, never silently dropped
        names = label_scientific_names(self.labels, taxonomy)
        self.names = [name if name in known else None for name in names]
        self.unmatched = [label for label, name in zip(self.labels, self.names) if name is None]
        bird = [bool(name) and (not taxonomy or name in taxonomy) for name in names]
        self._eligible = np.asarray(bird if birds_only else [True] * len(self.labels), dtype=bool)
        self._cache: dict[Place, np.ndarray] = {}

    def expected(self, place: Place) -> dict[str, float]:
        """Scientific name (lower case) -> location probability, for names at or above the threshold."""
        probabilities = self.model.probabilities(place.lat, place.lon, place.week)
        expected: dict[str, float] = {}
        for name, p in zip(self._model_names, probabilities):
            if p >= self.threshold:
                expected[name] = max(float(p), expected.get(name, 0.0))
        return expected

    def mask(self, place: Place | None) -> np.ndarray:
        """True for labels kept at `place` (None: no place known, only `birds_only` applies)."""
        if place is None:
            return self._eligible.copy()
        if place not in self._cache:
            check_place(place.lat, place.lon, place.week, self.threshold)
            expected = self.expected(place)
            kept = [name is None or name in expected for name in self.names]
            self._cache[place] = np.asarray(kept, dtype=bool) & self._eligible
        return self._cache[place].copy()


def read_places(metadata: str | Path, week: int | None = None) -> dict[str, Place]:
    """Per recording (its path as the metadata's `filename`/`file` column gives it, POSIX),
    its place: `latitude`, `longitude`, and the week from a `week` or `date` column, else
    `week`, else the whole year. Rows with an empty or non-numeric coordinate are left out."""
    path = Path(metadata)
    if not path.is_file():
        raise UsageError(f"{path}: metadata file not found")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        key = "filename" if "filename" in columns else "file" if "file" in columns else None
        if key is None or not {"latitude", "longitude"} <= columns:
            raise UsageError(f"{path}: per-file places need `filename` (or `file`), `latitude` and `longitude` columns")
        places: dict[str, Place] = {}
        names: dict[str, Place] = {}
        for number, row in enumerate(reader, start=2):
            try:
                lat, lon = float(row["latitude"]), float(row["longitude"])
            except (TypeError, ValueError):
                continue
            if math.isnan(lat) or math.isnan(lon):
                continue
            if row.get("week") not in (None, ""):
                row_week = int(float(row["week"]))
            elif row.get("date"):
                row_week = birdnet_week(row["date"])
            else:
                row_week = ALL_YEAR if week is None else week
            try:
                check_place(lat, lon, row_week)
            except UsageError as error:
                raise UsageError(f"{path}, line {number}: {error}") from None
            relative = row[key].replace("\\", "/").strip()
            places[relative] = Place(lat, lon, row_week)
            names.setdefault(relative.rsplit("/", 1)[-1], Place(lat, lon, row_week))
    return {**names, **places}  # a recording found by its path, else by its file name


def place_of(file: str, places: dict[str, Place], default: Place | None) -> Place | None:
    """A recording's place: its metadata row (matched by relative path, else by file name),
    else the place given for all."""
    return places.get(file) or places.get(file.rsplit("/", 1)[-1]) or default


# ---------------------------------------------------------------- per-file masks (submit)


@dataclass(frozen=True)
class LocationOptions:
    """Where recordings were made: one place for all (`lat`, `lon`, `week`) and/or per file
    (`metadata`: a CSV as read_places reads it); `taxonomy` names eBird codes' species."""

    lat: float | None = None
    lon: float | None = None
    week: int = ALL_YEAR
    metadata: str | None = None
    threshold: float = DEFAULT_THRESHOLD
    birds_only: bool = False
    taxonomy: str | None = None

    @property
    def active(self) -> bool:
        return self.lat is not None or self.lon is not None or bool(self.metadata) or self.birds_only

    def default_place(self) -> Place | None:
        if (self.lat is None) != (self.lon is None):
            raise UsageError("give both `lat` and `lon` (or neither)")
        if self.lat is None:
            return None
        check_place(self.lat, self.lon, self.week, self.threshold)
        return Place(float(self.lat), float(self.lon), int(self.week))


def location_setup(labels: list[str], options: LocationOptions, model_dir: str | Path | None = None
                   ) -> tuple[LocationFilter, dict[str, Place], Place | None]:
    """The filter over `labels`, the per-file places of `options.metadata`, and the place
    given for all (None when none is)."""
    from birdemb.labels.species import read_taxonomy

    default = options.default_place()
    places = read_places(options.metadata, options.week) if options.metadata else {}
    taxonomy = read_taxonomy(options.taxonomy) if options.taxonomy else None
    return LocationFilter(labels, taxonomy, options.threshold, options.birds_only, model_dir), places, default


def file_masks(files: list[str], labels: list[str], options: LocationOptions,
               model_dir: str | Path | None = None) -> tuple[dict[str, tuple[bool, ...]], list[str]]:
    """Per file (a name or relative path) the labels kept at its place (True) and a report:
    how many labels each distinct place keeps, how many labels could not be matched. A file
    without a place (not in `metadata`, no `lat`/`lon`) gets no mask (it is not filtered),
    unless `birds_only`."""
    location, places, default = location_setup(labels, options, model_dir)
    masks: dict[str, tuple[bool, ...]] = {}
    by_place: dict[Place | None, int] = {}
    for file in files:
        place = place_of(file, places, default)
        by_place[place] = by_place.get(place, 0) + 1
        if place is not None or options.birds_only:
            masks[file] = tuple(bool(v) for v in location.mask(place))
    lines = []
    for place, count in by_place.items():
        if place is None:
            what = "birds only" if options.birds_only else "not filtered"
            lines.append(f"{count} file(s) without a place: {what}"
                         + (f", keeps {int(location.mask(None).sum())} of {len(labels)} labels" if options.birds_only else ""))
        else:
            week = "whole year" if place.week == ALL_YEAR else f"week {place.week}"
            lines.append(f"lat {place.lat:g}, lon {place.lon:g}, {week}: keeps {int(location.mask(place).sum())} of "
                         f"{len(labels)} labels ({count} file(s))")
    unmatched = [i for i, name in enumerate(location.names) if name is None]
    kept = int(location.mask(None)[unmatched].sum()) if unmatched else 0
    shown = ", ".join(labels[i] for i in unmatched[:8]) + (" ..." if len(unmatched) > 8 else "")
    lines.append(f"{len(unmatched)} of {len(labels)} labels could not be matched by scientific name"
                 + (f" ({kept} kept, {len(unmatched) - kept} dropped as not birds): {shown}" if unmatched else ""))
    return masks, lines
