"""`birdemb detect`: window probabilities (detect_sources) -> detections -> the tables people
already read (detection_formats), resumable, with a parameters file and a summary per species.

A window yields a detection for each species at or above `min_conf`, after the species list
and the location filter, at most `top_n` per window; `merge_consecutive` joins up to that many
adjacent windows of one species into one detection (confidence: the mean of its three best
scores, as BirdNET-Analyzer merges).

Resumption: each finished recording is one line of OUT/.birdemb/detect.jsonl, appended after
its tables are written; a rerun with the same parameters skips those recordings, and the
combined tables are always rebuilt from that log. A failed recording is logged with its error
and tried again by the next run.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from birdemb import __version__
from birdemb.backbones.birdnet_location import ALL_YEAR
from birdemb.deploy.detection_formats import (
    Detection,
    TableOptions,
    parse_formats,
    write_combined_tables,
    write_file_tables,
    write_text,
)
from birdemb.deploy.location_filter import LocationOptions, location_setup, place_of
from birdemb.errors import UsageError
from birdemb.labels.species import (
    is_birdnet_label,
    is_non_event_label,
    read_species_list,
    read_taxonomy_names,
)
from birdemb.runtime.audio import AudioError

LEDGER = Path(".birdemb") / "detect.jsonl"
PARAMS = "detect_params.json"
SUMMARY = "detect_summary.csv"
DEFAULT_MIN_CONF = 0.25  # BirdNET-Analyzer's default


@dataclass
class DetectOptions:
    formats: tuple[str, ...] = ("raven",)
    min_conf: float = DEFAULT_MIN_CONF
    overlap: float = 0.0
    sensitivity: float = 1.0
    top_n: int | None = None
    merge_consecutive: int = 1  # 1: no merging; 0: merge any number of adjacent windows
    species_list: str | None = None
    taxonomy: str | None = None
    lat: float | None = None
    lon: float | None = None
    week: int | None = None
    location_metadata: str | None = None
    location_threshold: float = 0.03
    birds_only: bool = False
    progress: bool = True

    def check(self) -> None:
        if not 0.0 <= self.min_conf <= 1.0:
            raise UsageError(f"`min_conf` must be between 0 and 1 (got {self.min_conf})")
        if self.top_n is not None and self.top_n < 1:
            raise UsageError(f"`top_n` must be at least 1 (got {self.top_n})")
        if self.merge_consecutive < 0:
            raise UsageError(f"`merge_consecutive` must be 0 (no limit), 1 (off) or more (got {self.merge_consecutive})")
        if (self.lat is None) != (self.lon is None):
            raise UsageError("give both `lat` and `lon`, or neither")
        if self.week is not None and self.lat is None and not self.location_metadata:
            raise UsageError("`week` filters by place: give `lat` and `lon` (or `location_metadata`) too")

    def recorded(self) -> dict:
        """What decides the detections (the parameters file; a resumed run must match them)."""
        values = asdict(self)
        values.pop("progress")
        values["formats"] = list(self.formats)
        for key in ("species_list", "taxonomy", "location_metadata"):
            if values[key]:
                values[key] = str(Path(values[key]).resolve())
        return values


@dataclass
class DetectSummary:
    out: str
    recordings: int = 0
    skipped: int = 0  # finished by an earlier run
    failed: dict = field(default_factory=dict)  # recording -> error
    detections: int = 0
    audio_s: float = 0.0
    elapsed_s: float = 0.0
    per_species: dict = field(default_factory=dict)  # scientific -> [common, code, detections, recordings, max conf]
    notes: list = field(default_factory=list)

    def ranked(self) -> list:
        """(scientific, [common, code, detections, recordings, max conf]), most detected first."""
        return sorted(self.per_species.items(), key=lambda item: (-item[1][2], item[0]))

    def lines(self) -> list[str]:
        lines = [f"{self.recordings} recordings ({self.skipped} done before), {self.audio_s / 3600:.2f} h of audio, "
                 f"{self.detections} detections in {self.elapsed_s:.1f} s -> {self.out}"]
        lines += self.notes
        ranked = self.ranked()
        if ranked:
            lines.append(f"{'species':<40} {'detections':>10} {'recordings':>10} {'max conf':>8}")
            for scientific, (common, _, count, files, best) in ranked[:25]:
                lines.append(f"{(common + ' (' + scientific + ')')[:40]:<40} {count:>10} {files:>10} {best:>8.3f}")
            if len(ranked) > 25:
                lines.append(f"... and {len(ranked) - 25} more species (all in {SUMMARY})")
        for name, error in self.failed.items():
            lines.append(f"failed: {error}")
        if self.failed:
            lines.append(f"{len(self.failed)} recordings failed; rerun the same command to retry them")
        return lines


# ---------------------------------------------------------------- labels as the tables name them

def label_names(labels: list[str], taxonomy: str | None = None) -> list[tuple[str, str, str]]:
    """(scientific, common, species code) per output label: BirdNET labels carry both names
    (the code from the eBird taxonomy when given); eBird codes get their names from it."""
    names = read_taxonomy_names(taxonomy) if taxonomy else {}
    codes = {sci.lower(): code for code, (sci, _) in names.items()}
    out = []
    for label in labels:
        if is_non_event_label(label):  # engine, dog, human vocal: no species, no code
            out.append((*label.split("_", 1), label))
        elif is_birdnet_label(label):
            scientific, common = label.split("_", 1)
            out.append((scientific, common, codes.get(scientific.lower(), label)))
        elif label in names:
            out.append((*names[label], label))
        else:
            out.append((label, label, label))
    return out


def species_mask(labels: list[str], names: list[tuple[str, str, str]], path: str) -> tuple[np.ndarray, list[str]]:
    """Labels a species list keeps (lines name a BirdNET label, a scientific name or a species
    code), and the list's lines that match nothing."""
    wanted = read_species_list(path)
    lowered = {w.lower() for w in wanted}
    keys = [{label.lower(), sci.lower(), code.lower()} for label, (sci, _, code) in zip(labels, names)]
    mask = np.asarray([bool(k & lowered) for k in keys], dtype=bool)
    known = set().union(*keys) if keys else set()
    return mask, [w for w in wanted if w.lower() not in known]


# ---------------------------------------------------------------- windows -> detections

def window_detections(file: str, start: np.ndarray, end: np.ndarray, probabilities: np.ndarray, keep: np.ndarray,
                      names: list[tuple[str, str, str]], options: DetectOptions) -> list[Detection]:
    """One block of windows' detections: the species in `keep` at or above min_conf, or, with
    top_n, the top_n species in `keep` whatever their confidence (as BirdNET-Analyzer 2.4)."""
    hits = np.broadcast_to(keep[None, :], probabilities.shape)
    if options.top_n is None:
        hits = hits & (probabilities >= options.min_conf)
    found = []
    for row in np.flatnonzero(hits.any(axis=1)):
        columns = np.flatnonzero(hits[row])
        columns = columns[np.argsort(-probabilities[row, columns], kind="stable")][: options.top_n]
        for column in columns:
            scientific, common, code = names[column]
            found.append(Detection(file, float(start[row]), float(end[row]), scientific, common, code,
                                   float(probabilities[row, column])))
    return found


def ended_by(detections: list[Detection], duration_s: float) -> list[Detection]:
    """Times as BirdNET-Analyzer writes them: a segment ends at the recording's end at the
    latest, and times are rounded to hundredths of a second."""
    return [replace(d, start_s=round(d.start_s, 2), end_s=round(min(d.end_s, duration_s), 2)) for d in detections]


def merge_consecutive(detections: list[Detection], limit: int) -> list[Detection]:
    """Join runs of one species' windows that touch or overlap, at most `limit` windows a run
    (0: no limit); a run's confidence is the mean of its three best scores."""
    if limit == 1 or not detections:
        return detections
    merged = []
    by_species: dict[str, list[Detection]] = {}
    for d in detections:
        by_species.setdefault(d.scientific, []).append(d)
    for runs in by_species.values():
        runs.sort(key=lambda d: d.start_s)
        group = [runs[0]]
        for d in runs[1:]:
            if d.start_s <= group[-1].end_s + 1e-6 and (limit == 0 or len(group) < limit):
                group.append(d)
            else:
                merged.append(_joined(group))
                group = [d]
        merged.append(_joined(group))
    return sorted(merged, key=lambda d: (d.start_s, -d.confidence))


def _joined(group: list[Detection]) -> Detection:
    best = sorted((d.confidence for d in group), reverse=True)[:3]
    first = group[0]
    return Detection(first.file, first.start_s, group[-1].end_s, first.scientific, first.common, first.code,
                     float(np.mean(best)))


# ---------------------------------------------------------------- the job

def _ledger(out: Path) -> dict[str, dict]:
    """Finished recordings from the log (a line cut short by a kill is ignored)."""
    path = out / LEDGER
    done: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "error" in entry:
                done.pop(entry["file"], None)
            else:
                done[entry["file"]] = entry
    return done


def _append(out: Path, entry: dict) -> None:
    path = out / LEDGER
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _check_params(out: Path, params: dict) -> None:
    """A resumed run must make the same detections; a different one needs its own folder."""
    path = out / PARAMS
    if not path.is_file() or not (out / LEDGER).is_file():
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    differing = sorted(k for k in set(old["decides"]) | set(params["decides"])
                       if old["decides"].get(k) != params["decides"].get(k))
    if differing:
        raise UsageError(f"{out}: holds detections made with other settings ({', '.join(differing)}); "
                         "choose another `out` folder, or delete this one to start over")


def detect(source, out: str | Path, options: DetectOptions, recordings, audio_root: str = "",
           total: int | None = None) -> DetectSummary:
    """Detections of every recording `source` scores (`source.labels`, `source.described`).
    `recordings(skip)` yields (relative name, Scored) for the recordings not in `skip`;
    `total`: how many recordings there are, for the progress bar."""
    started = time.perf_counter()
    options.check()
    options.formats = parse_formats(options.formats)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = list(source.labels)
    names = label_names(labels, options.taxonomy)
    keep = np.ones(len(labels), dtype=bool)
    summary = DetectSummary(str(out))
    if options.species_list:
        keep, unknown = species_mask(labels, names, options.species_list)
        summary.notes.append(f"species list: {int(keep.sum())} of {len(labels)} labels kept")
        if unknown:
            summary.notes.append(f"species list: {len(unknown)} lines match no label: {', '.join(unknown[:5])}"
                                 + (" ..." if len(unknown) > 5 else ""))
    location, places, default_place = _location(labels, options, summary)
    params = {"birdemb": __version__, "decides": {**options.recorded(), "source": source.described},
              "labels": len(labels), "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _check_params(out, params)
    write_text(out / PARAMS, json.dumps(params, indent=2, default=str) + "\n")
    done = _ledger(out)
    summary.skipped = len(done)
    table_options = TableOptions(audio_root=audio_root, overlap=options.overlap, sensitivity=options.sensitivity,
                                 lat=options.lat, lon=options.lon, week=options.week)
    progress = _progress(options.progress, None if total is None else max(0, total - len(done)))
    for relative, scored in recordings(set(done)):
        mask = keep if location is None else keep & location.mask(place_of(relative, places, default_place))
        try:
            found = []
            for start, end, probabilities in scored.blocks:
                found += window_detections(relative, start, end, probabilities, mask, names, options)
            duration = scored.duration[0]
            found = merge_consecutive(ended_by(found, duration), options.merge_consecutive)
        except AudioError as error:
            summary.failed[relative] = str(error)
            _append(out, {"file": relative, "error": str(error)})
            progress.update(1)
            continue
        write_file_tables(found, relative, duration, out, options.formats, table_options)
        entry = {"file": relative, "duration_s": duration,
                 "detections": [[d.start_s, d.end_s, d.scientific, d.common, d.code, d.confidence] for d in found]}
        _append(out, entry)
        done[relative] = entry
        summary.audio_s += duration
        progress.update(1)
    progress.close()
    results = [(file, entry["duration_s"], [Detection(file, *row) for row in entry["detections"]])
               for file, entry in sorted(done.items())]
    write_combined_tables(results, out, options.formats, table_options)
    _tally(summary, results)
    _write_summary(out / SUMMARY, summary)
    summary.recordings = len(results) + len(summary.failed)
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _location(labels, options: DetectOptions, summary: DetectSummary):
    where = LocationOptions(options.lat, options.lon, ALL_YEAR if options.week is None else options.week,
                            options.location_metadata, options.location_threshold, options.birds_only, options.taxonomy)
    if not where.active:
        return None, {}, None
    location, places, default = location_setup(labels, where)
    if default is not None:
        summary.notes.append(f"location {default.lat:g}, {default.lon:g}, week {default.week}: "
                             f"{int(location.mask(default).sum())} of {len(labels)} labels kept")
    if places:
        summary.notes.append(f"location metadata: {len(places)} recordings with a place")
    if location.unmatched:
        summary.notes.append(f"location filter: {len(location.unmatched)} labels could not be matched by scientific "
                             "name and are kept" + ("" if options.taxonomy else " (give `taxonomy` to match eBird codes)"))
    return location, places, default


def _tally(summary: DetectSummary, results) -> None:
    for _, _, found in results:
        seen = set()
        for d in found:
            entry = summary.per_species.setdefault(d.scientific, [d.common, d.code, 0, 0, 0.0])
            entry[2] += 1
            entry[4] = max(entry[4], d.confidence)
            if d.scientific not in seen:
                entry[3] += 1
                seen.add(d.scientific)
        summary.detections += len(found)


def _write_summary(path: Path, summary: DetectSummary) -> None:
    import csv
    import io

    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["Scientific name", "Common name", "Species Code", "Detections", "Recordings", "Max confidence"])
    for scientific, (common, code, count, files, best) in summary.ranked():
        writer.writerow([scientific, common, code, count, files, f"{best:.4f}"])
    write_text(path, text.getvalue())


class _Quiet:
    def update(self, n): pass

    def close(self): pass


def _progress(show: bool, total: int | None):
    if not show:
        return _Quiet()
    from tqdm import tqdm

    return tqdm(total=total, unit="recording", desc="detect", dynamic_ncols=True)
