"""Detection tables in BirdNET-Analyzer 2.4's forms: exact headers, times and confidences read
back, the combined Raven table's timeline, BirdNET's treatment of a recording without
detections, atomic writes, and our tables read back as annotations by the repository's reader
(birdemb.labels.annotations) and by third-party readers (pandas, crowsetta where installed)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from birdemb.deploy.detection_formats import (
    COMBINED,
    FORMATS,
    PARQUET_COLUMNS,
    Detection,
    DetectionTableError,
    FormatError,
    TableOptions,
    atomic_write,
    parse_formats,
    per_file_paths,
    read_raven_table,
    write_combined_tables,
    write_file_tables,
)
from birdemb.errors import BirdembError
from birdemb.labels.annotations import Event, read_annotations

RAVEN_HEADER = ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\t"
                "Common Name\tScientific Name\tSpecies Code\tConfidence\tBegin Path\tFile Offset (s)")
CSV_HEADER = "Start (s),End (s),Scientific name,Common name,Confidence,File"
KALEIDOSCOPE_HEADER = ("INDIR,FOLDER,IN FILE,OFFSET,DURATION,scientific_name,common_name,confidence,lat,lon,week,"
                       "overlap,sensitivity")
NAMES = {"amerob": ("Turdus migratorius", "American Robin"), "norcar": ("Cardinalis cardinalis", "Northern Cardinal"),
         "bkcchi": ("Poecile atricapillus", "Black-capped Chickadee")}
TAXONOMY = {scientific.lower(): (code,) for code, (scientific, _) in NAMES.items()}
CONF_TOL = 5e-5  # confidences are written to 4 decimals, as BirdNET does


def by_place(events) -> list[Event]:
    return sorted(events, key=lambda e: (e.file, e.start_s, e.label, e.end_s))


def det(file, start, end, code, confidence) -> Detection:
    scientific, common = NAMES[code]
    return Detection(file, start, end, scientific, common, code, confidence)


# three recordings: one with overlapping windows and odd times, one without detections, one more
A, EMPTY, B = "site1/rec a.wav", "site1/quiet.flac", "site2/rec_b.mp3"
DURATIONS = {A: 12.5, EMPTY: 7.25, B: 9.0}
DETECTIONS = {
    A: [det(A, 3.0, 6.0, "amerob", 0.91234), det(A, 0.0, 3.0, "norcar", 0.5), det(A, 1.5, 4.5, "amerob", 0.333333),
        det(A, 9.123456, 12.5, "bkcchi", 0.25)],
    EMPTY: [],
    B: [det(B, 0.0, 3.0, "bkcchi", 0.99995), det(B, 0.0, 3.0, "norcar", 0.7)],
}
RESULTS = [(f, DURATIONS[f], DETECTIONS[f]) for f in (A, EMPTY, B)]


@pytest.fixture()
def audio_root(tmp_path) -> Path:
    """The recordings as (empty) files, so the annotation reader can find them by name."""
    root = tmp_path / "audio"
    for relative in DURATIONS:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).touch()
    return root


@pytest.fixture()
def written(tmp_path, audio_root):
    out = tmp_path / "out"
    options = TableOptions(audio_root=str(audio_root), low_hz=150, high_hz=12000.5, lat=42.45, lon=-76.5, week=17,
                           overlap=1.5, sensitivity=1.25)
    files = {f: write_file_tables(DETECTIONS[f], f, DURATIONS[f], out, "all", options) for f in DURATIONS}
    combined = write_combined_tables(RESULTS, out, "all", options)
    return out, options, files, combined


def test_parse_formats_accepts_lists_aliases_and_all_and_rejects_unknown_names():
    assert parse_formats("raven,csv") == ("raven", "birdnet-csv")
    assert parse_formats(["parquet", "table", "raven"]) == ("raven", "parquet")
    assert parse_formats(" Kaleidoscope , audacity") == ("audacity", "kaleidoscope")
    assert parse_formats("all") == FORMATS
    with pytest.raises(FormatError, match="unknown format 'xls'") as caught:
        parse_formats("raven,xls")
    assert isinstance(caught.value, BirdembError) and "\n" not in str(caught.value)
    with pytest.raises(FormatError):
        parse_formats(",")


def test_per_file_paths_mirror_the_input_tree_with_birdnets_suffixes(tmp_path):
    paths = per_file_paths("site1/rec.v2.wav", tmp_path, "all")
    stem = tmp_path / "site1" / "rec.v2"
    assert paths == {"raven": Path(f"{stem}.BirdNET.selection.table.txt"),
                     "audacity": Path(f"{stem}.BirdNET.results.txt"),
                     "birdnet-csv": Path(f"{stem}.BirdNET.results.csv"),
                     "kaleidoscope": Path(f"{stem}.BirdNET.results.kaleidoscope.csv")}  # parquet: combined only
    assert list(per_file_paths("x.wav", tmp_path, "parquet")) == []
    for outside in ("../x.wav", "/abs/x.wav"):
        with pytest.raises(DetectionTableError):
            per_file_paths(outside, tmp_path, "raven")


def test_every_table_has_exactly_the_documented_header(written):
    out, _, files, combined = written
    per_file = per_file_paths(A, out, "all")
    first = {path: path.read_text(encoding="utf-8").splitlines()[0] for path in files[A]}
    assert first[per_file["raven"]] == RAVEN_HEADER
    assert first[per_file["birdnet-csv"]] == CSV_HEADER
    assert first[per_file["kaleidoscope"]] == KALEIDOSCOPE_HEADER
    assert first[per_file["audacity"]].split("\t")[0] == "0.0"  # Audacity labels carry no header
    assert [p.name for p in combined] == ["BirdNET_SelectionTable.txt", "BirdNET_SelectionTable.list.txt",
                                         "BirdNET_CombinedTable.csv", "BirdNET_Kaleidoscope.csv", "detections.parquet"]
    assert (out / COMBINED["raven"]).read_text().splitlines()[0] == RAVEN_HEADER
    assert (out / COMBINED["birdnet-csv"]).read_text().splitlines()[0] == CSV_HEADER
    assert (out / COMBINED["kaleidoscope"]).read_text().splitlines()[0] == KALEIDOSCOPE_HEADER
    # pandas, as a tool's documented columns would read them
    assert list(pd.read_csv(per_file["raven"], sep="\t").columns) == RAVEN_HEADER.split("\t")
    assert list(pd.read_csv(per_file["kaleidoscope"]).columns) == KALEIDOSCOPE_HEADER.split(",")
    assert pl.read_parquet(out / "detections.parquet").columns == list(PARQUET_COLUMNS)


def test_raven_table_round_trips_times_confidences_band_and_path(written, audio_root):
    out, options, _, _ = written
    rows = read_raven_table(per_file_paths(A, out, "raven")["raven"])
    expected = sorted(DETECTIONS[A], key=lambda d: (d.start_s, -d.confidence))
    assert [r["Selection"] for r in rows] == [1, 2, 3, 4]
    for row, d in zip(rows, expected, strict=True):
        assert (row["Begin Time (s)"], row["End Time (s)"], row["File Offset (s)"]) == (d.start_s, d.end_s, d.start_s)
        assert row["Begin Time (s)"] <= d.start_s and row["End Time (s)"] >= d.end_s  # covers its window
        assert abs(row["Confidence"] - d.confidence) <= CONF_TOL
        assert (row["Common Name"], row["Scientific Name"], row["Species Code"]) == (d.common, d.scientific, d.code)
        assert (row["View"], row["Channel"], row["Low Freq (Hz)"], row["High Freq (Hz)"]) == ("Spectrogram 1", 1,
                                                                                              150, 12000.5)
        assert row["Begin Path"] == str(audio_root / A)


def test_combined_raven_table_runs_on_one_timeline_with_offsets_within_files(written, audio_root):
    out, _, _, _ = written
    rows = read_raven_table(out / COMBINED["raven"])
    assert [r["Selection"] for r in rows] == list(range(1, 7))
    assert all(r["Common Name"] != "nocall" for r in rows)  # the empty recording adds time, not rows
    before = {A: 0.0, EMPTY: DURATIONS[A], B: DURATIONS[A] + DURATIONS[EMPTY]}
    expected = [(f, d) for f in (A, B) for d in sorted(DETECTIONS[f], key=lambda d: (d.start_s, -d.confidence))]
    for row, (file, d) in zip(rows, expected, strict=True):
        assert row["Begin Path"] == str(audio_root / file)
        assert row["File Offset (s)"] == d.start_s
        assert math.isclose(row["Begin Time (s)"], before[file] + d.start_s, abs_tol=1e-6)
        assert math.isclose(row["End Time (s)"], before[file] + d.end_s, abs_tol=1e-6)
    listed = (out / "BirdNET_SelectionTable.list.txt").read_text().splitlines()
    assert listed == [str(audio_root / f) for f in (A, EMPTY, B)]


def test_csv_audacity_kaleidoscope_and_parquet_round_trip(written, audio_root):
    out, options, _, _ = written
    paths = per_file_paths(A, out, "all")
    expected = sorted(DETECTIONS[A], key=lambda d: (d.start_s, -d.confidence))
    with open(paths["birdnet-csv"], newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    audacity = [line.split("\t") for line in paths["audacity"].read_text().splitlines()]
    kaleidoscope = pd.read_csv(paths["kaleidoscope"])
    for d, row, label, (_, k) in zip(expected, rows, audacity, kaleidoscope.iterrows(), strict=True):
        assert (float(row["Start (s)"]), float(row["End (s)"])) == (d.start_s, d.end_s)
        assert row["File"] == str(audio_root / A)
        assert (row["Scientific name"], row["Common name"]) == (d.scientific, d.common)
        assert abs(float(row["Confidence"]) - d.confidence) <= CONF_TOL
        assert (float(label[0]), float(label[1]), label[2]) == (d.start_s, d.end_s, f"{d.scientific}, {d.common}")
        assert abs(float(label[3]) - d.confidence) <= CONF_TOL
        assert Path(k["INDIR"], k["FOLDER"], k["IN FILE"]) == audio_root / A
        assert math.isclose(k["OFFSET"], d.start_s) and math.isclose(k["OFFSET"] + k["DURATION"], d.end_s)
        assert (k["scientific_name"], k["common_name"]) == (d.scientific, d.common)
        assert abs(k["confidence"] - d.confidence) <= CONF_TOL
        assert (k["lat"], k["lon"], k["week"], k["overlap"], k["sensitivity"]) == (42.45, -76.5, 17, 1.5, 1.25)
    combined = pd.read_csv(out / COMBINED["birdnet-csv"])
    assert len(combined) == 6 and len(pd.read_csv(out / COMBINED["kaleidoscope"])) == 6
    table = pl.read_parquet(out / "detections.parquet")
    everything = [d for f in (A, B) for d in sorted(DETECTIONS[f], key=lambda d: (d.start_s, -d.confidence))]
    assert [Detection(**row) for row in table.iter_rows(named=True)] == everything  # exact, float64


def test_a_recording_without_detections_is_written_as_birdnet_does(written, audio_root, tmp_path):
    out, _, _, _ = written
    paths = per_file_paths(EMPTY, out, "all")
    rows = read_raven_table(paths["raven"])  # one placeholder row, so combining still knows the file
    assert len(rows) == 1 and {rows[0][c] for c in ("Common Name", "Scientific Name", "Species Code")} == {"nocall"}
    assert (rows[0]["Begin Time (s)"], rows[0]["End Time (s)"], rows[0]["Confidence"]) == (0, 3, 1.0)
    assert rows[0]["Begin Path"] == str(audio_root / EMPTY)
    assert paths["audacity"].read_text() == ""
    assert paths["birdnet-csv"].read_text() == CSV_HEADER + "\n"
    assert paths["kaleidoscope"].read_text() == KALEIDOSCOPE_HEADER + "\n"
    nothing = write_combined_tables([(EMPTY, 7.25, [])], tmp_path / "none", "all", TableOptions())
    assert [p.read_text() if p.suffix != ".parquet" else len(pl.read_parquet(p)) for p in nothing] == [
        RAVEN_HEADER + "\n", EMPTY + "\n", CSV_HEADER + "\n", KALEIDOSCOPE_HEADER + "\n", 0]


def test_our_tables_read_back_as_the_detections_through_read_annotations(written, audio_root):
    out, _, _, _ = written
    expected = by_place(Event(d.file, d.start_s, d.end_s, d.code) for f in (A, B) for d in DETECTIONS[f])
    for form in ("raven", "audacity", "birdnet-csv"):
        events = [e for f in (A, B) for e in
                  read_annotations(per_file_paths(f, out, form)[form], audio_root, TAXONOMY)]
        assert by_place(events) == expected, form
    assert read_annotations(out / COMBINED["raven"], audio_root, TAXONOMY) == expected
    assert read_annotations(out / COMBINED["birdnet-csv"], audio_root, TAXONOMY) == expected
    # a recording without detections reads as annotated with no species, as BirdNET's own tables do
    assert read_annotations(per_file_paths(EMPTY, out, "raven")["raven"], audio_root) == [Event(EMPTY, 0, 3, "nocall")]
    above = read_annotations(per_file_paths(A, out, "raven")["raven"], audio_root, TAXONOMY, min_confidence=0.5)
    assert above == by_place(Event(A, d.start_s, d.end_s, d.code) for d in DETECTIONS[A] if d.confidence >= 0.5)


def test_raven_tables_open_in_crowsetta(written):
    import crowsetta  # a declared test dependency (requirements.lock): this never skips
    out, _, _, _ = written
    raven = crowsetta.formats.bbox.Raven.from_file(out / COMBINED["raven"], annot_col="Species Code")
    bboxes = raven.to_bbox()
    assert len(bboxes) == 6
    assert [b.label for b in bboxes] == [r["Species Code"] for r in read_raven_table(out / COMBINED["raven"])]
    assert all(b.low_freq == 150 and b.high_freq == 12000.5 for b in bboxes)
    placeholder = crowsetta.formats.bbox.Raven.from_file(per_file_paths(EMPTY, out, "raven")["raven"],
                                                         annot_col="Species Code")
    assert [(b.onset, b.offset, b.label) for b in placeholder.to_bbox()] == [(0.0, 3.0, "nocall")]


def test_names_with_commas_quotes_and_tabs_stay_in_their_cells(tmp_path):
    odd = Detection("a.wav", 0.0, 3.0, "Genus species", 'Robin, "the" \tred', "Genus species", 0.5)
    paths = per_file_paths("a.wav", tmp_path, "all")
    write_file_tables([odd], "a.wav", 3.0, tmp_path, "all", TableOptions())
    assert pd.read_csv(paths["birdnet-csv"])["Common name"].tolist() == ['Robin, "the" \tred']
    assert pd.read_csv(paths["kaleidoscope"])["common_name"].tolist() == ['Robin, "the" \tred']
    assert read_raven_table(paths["raven"])[0]["Common Name"] == 'Robin, "the" red'  # one cell per column


def test_bad_detections_and_failed_writes_raise_one_line_and_leave_no_half_table(tmp_path):
    with pytest.raises(DetectionTableError, match="another recording"):
        write_file_tables([det(B, 0, 3, "amerob", 0.9)], A, 10, tmp_path, "raven", TableOptions())
    with pytest.raises(DetectionTableError, match="end after it starts"):
        write_file_tables([det(A, 3, 3, "amerob", 0.9)], A, 10, tmp_path, "raven", TableOptions())
    target = write_file_tables([det(A, 0, 3, "amerob", 0.9)], A, 10, tmp_path, "raven", TableOptions())[0]
    before = target.read_text()

    def dies_half_way(tmp):
        tmp.write_text(RAVEN_HEADER + "\n1\tSpectro")
        raise OSError(28, "No space left on device")

    with pytest.raises(DetectionTableError, match="No space left") as caught:
        atomic_write(target, dies_half_way)
    assert "\n" not in str(caught.value)
    assert target.read_text() == before  # the old table, whole
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temporary left
    (tmp_path / "blocked").write_text("a file where a folder should be")
    with pytest.raises(DetectionTableError, match="could not write"):
        write_file_tables([], "x.wav", 3, tmp_path / "blocked", "audacity", TableOptions())


def test_read_raven_table_checks_the_header(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Selection\tBegin Time (s)\tEnd Time (s)\tAnnotation\n1\t0\t3\tx\n")
    with pytest.raises(DetectionTableError, match="not a BirdNET Raven selection table"):
        read_raven_table(path)


def test_real_taxonomy_maps_every_table_to_the_same_ebird_codes(xc10, tmp_path):
    from birdemb.labels.species import read_taxonomy

    taxonomy = read_taxonomy(xc10 / "eBird_Taxonomy_v2021.csv")
    root = tmp_path / "audio"
    (root / A).parent.mkdir(parents=True)
    (root / A).touch()
    write_file_tables(DETECTIONS[A], A, 12.5, tmp_path / "out", "all", TableOptions(audio_root=str(root)))
    for form, path in per_file_paths(A, tmp_path / "out", "raven,audacity,birdnet-csv").items():
        labels = {e.label for e in read_annotations(path, root, taxonomy)}
        assert labels == {"amerob", "norcar", "bkcchi"}, form
