"""Strong labels: each annotation form read from files laid out as the tools write them, folder
mode, path and label mapping, errors, the window mapping against a brute-force loop, and the real
piha corpus (254 hand-drawn events over 11 recordings) when it is present."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from birdemb.errors import BirdembError
from birdemb.labels.annotations import AnnotationError, Event, events_to_windows, map_labels, read_annotations
from tests.helpers.paths import SHARED

PIHA = SHARED / "data" / "piha"
TAXONOMY = {"lipaugus vociferans": "scrpih1", "turdus migratorius": "amerob", "cyanocitta cristata": "blujay"}
RAVEN_HEADER = ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\t"
                "Common Name\tSpecies Code\tConfidence\tBegin Path\tFile Offset (s)")


@pytest.fixture(scope="module")
def piha() -> Path:
    if not (PIHA / "annotations.csv").is_file() or not (PIHA / "audio").is_dir():
        pytest.skip(f"the real piha corpus is absent ({PIHA} not found); this test needs its annotations and audio")
    return PIHA


@pytest.fixture()
def audio_root(tmp_path) -> Path:
    """Audio files by name only (the readers look names up; they never decode)."""
    root = tmp_path / "audio"
    for name in ("rec1.wav", "rec2.flac", "sub/rec3.mp3", "sub/rec4.ogg", "a/dup.wav", "b/dup.wav"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    return root


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_plain_csv(tmp_path, audio_root):
    path = write(tmp_path / "ann.csv", "file,start_s,end_s,label\n"
                 "sub/rec3.mp3,4.0,6.5,norcar\n\nrec1.wav,1.0,2.0,amerob\nrec1.wav,1.0,1.5,blujay\n")
    assert read_annotations(path, audio_root) == [
        Event("rec1.wav", 1.0, 2.0, "amerob"), Event("rec1.wav", 1.0, 1.5, "blujay"),
        Event("sub/rec3.mp3", 4.0, 6.5, "norcar")]
    assert read_annotations(path) == read_annotations(path, audio_root)  # relative paths are kept as written


def test_plain_csv_paths_made_relative_to_the_audio_root(tmp_path, audio_root):
    path = write(tmp_path / "ann.csv", "file,start_s,end_s,label\n"
                 f"{audio_root / 'sub' / 'rec4.ogg'},0,1,amerob\n"   # absolute, under the root
                 "audio/rec2.flac,0,1,amerob\n"                       # relative to the annotation file
                 "C:\\Users\\me\\field\\sub\\rec3.mp3,0,1,amerob\n"  # another machine's path, one match
                 "/elsewhere/missing.wav,0,1,amerob\n")               # nowhere: kept as written
    assert sorted(e.file for e in read_annotations(path, audio_root)) == [
        "/elsewhere/missing.wav", "rec2.flac", "sub/rec3.mp3", "sub/rec4.ogg"]
    assert sorted(e.file for e in read_annotations(path))[0] == "/elsewhere/missing.wav"


def test_birdnet_selection_table_per_file(tmp_path, audio_root):
    # BirdNET-Analyzer: one row per detection, view "Spectrogram 1", the audio path in Begin Path
    path = write(tmp_path / "out" / "sub" / "rec3.BirdNET.selection.table.txt", RAVEN_HEADER + "\n"
                 f"1\tSpectrogram 1\t1\t0.0\t3.0\t0\t15000\tScreaming Piha\tscrpih1\t0.9123\t{audio_root}/sub/rec3.mp3\t0.0\n"
                 f"2\tSpectrogram 1\t1\t3.0\t6.0\t0\t15000\tAmerican Robin\tamerob\t0.1500\t{audio_root}/sub/rec3.mp3\t3.0\n")
    assert read_annotations(path, audio_root) == [Event("sub/rec3.mp3", 0.0, 3.0, "scrpih1"),
                                                  Event("sub/rec3.mp3", 3.0, 6.0, "amerob")]
    assert read_annotations(path, audio_root, min_confidence=0.5) == [Event("sub/rec3.mp3", 0.0, 3.0, "scrpih1")]
    assert read_annotations(path)[0].file == f"{audio_root}/sub/rec3.mp3"  # no root: as written


def test_birdnet_combined_selection_table_uses_the_file_offset(tmp_path, audio_root):
    # BirdNET_SelectionTable.txt: Begin Time runs on across files, File Offset (s) is within each file
    path = write(tmp_path / "BirdNET_SelectionTable.txt", RAVEN_HEADER + "\n"
                 f"1\tSpectrogram 1\t1\t3.0\t6.0\t0\t15000\tAmerican Robin\tamerob\t0.8\t{audio_root}/rec1.wav\t3.0\n"
                 f"2\tSpectrogram 1\t1\t62.0\t65.0\t0\t15000\tBlue Jay\tblujay\t0.7\t{audio_root}/rec2.flac\t2.0\n")
    assert read_annotations(path, audio_root) == [Event("rec1.wav", 3.0, 6.0, "amerob"),
                                                  Event("rec2.flac", 2.0, 5.0, "blujay")]


def test_raven_table_keeps_each_selection_once_and_finds_the_audio_by_name(tmp_path, audio_root):
    # Raven Pro: every selection once per view; the audio file from "<stem>.Table.1.selections.txt"
    header = "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tAnnotation"
    path = write(tmp_path / "tables" / "rec2.Table.1.selections.txt", header + "\n"
                 "1\tWaveform 1\t1\t1.25\t2.5\t0.0\t0.0\tamerob\n"
                 "1\tSpectrogram 1\t1\t1.25\t2.5\t1200.0\t4800.0\tamerob\n"
                 "2\tWaveform 1\t1\t7.0\t9.0\t0.0\t0.0\tLipaugus vociferans_Screaming Piha\n"
                 "2\tSpectrogram 1\t1\t7.0\t9.0\t900.0\t3000.0\tLipaugus vociferans_Screaming Piha\n")
    assert read_annotations(path, audio_root, TAXONOMY) == [Event("rec2.flac", 1.25, 2.5, "amerob"),
                                                            Event("rec2.flac", 7.0, 9.0, "scrpih1")]
    assert read_annotations(path, audio_root)[1].label == "Lipaugus vociferans_Screaming Piha"


def test_raven_label_column_order(tmp_path, audio_root):
    header = "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tCommon Name\tClass\tBegin File"
    path = write(tmp_path / "x.txt", header + "\n1\tSpectrogram 1\t1\t0\t1\tBlue Jay\tblujay\trec1.wav\n"
                 "2\tSpectrogram 1\t1\t2\t3\tBlue Jay\t\trec1.wav\n")
    assert [e.label for e in read_annotations(path, audio_root)] == ["blujay", "Blue Jay"]
    write(path, "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tNotes\n1\tSpectrogram 1\t1\t0\t1\tx\n")
    with pytest.raises(AnnotationError, match=r"x\.txt: Raven selection table without a label column"):
        read_annotations(path, audio_root)


def test_audacity_labels(tmp_path, audio_root):
    # Audacity label track; BirdNET-Analyzer writes "Scientific, Common" and the confidence
    birdnet = write(tmp_path / "rec1.BirdNET.results.txt",
                    "0.0\t3.0\tLipaugus vociferans, Screaming Piha\t0.8123\n"
                    "3.0\t6.0\tTurdus migratorius, American Robin\t0.2000\n")
    assert read_annotations(birdnet, audio_root, TAXONOMY) == [Event("rec1.wav", 0.0, 3.0, "scrpih1"),
                                                               Event("rec1.wav", 3.0, 6.0, "amerob")]
    assert len(read_annotations(birdnet, audio_root, TAXONOMY, min_confidence=0.5)) == 1
    plain = write(tmp_path / "labels" / "rec4.txt",
                  "1.500000\t2.750000\tnorcar\n\\\t1000.000000\t5000.000000\n\n4.000000\t4.500000\tamerob\n")
    assert read_annotations(plain, audio_root) == [Event("sub/rec4.ogg", 1.5, 2.75, "norcar"),
                                                   Event("sub/rec4.ogg", 4.0, 4.5, "amerob")]
    other = write(tmp_path / "rec2.labels.txt", "0.5\t1.5\tblujay\n")
    assert read_annotations(other, audio_root) == [Event("rec2.flac", 0.5, 1.5, "blujay")]


def test_birdnet_csv_results(tmp_path, audio_root):
    header = "Start (s),End (s),Scientific name,Common name,Confidence,File\n"
    combined = write(tmp_path / "BirdNET_CombinedTable.csv", header +
                     f"0.0,3.0,Turdus migratorius,American Robin,0.9000,{audio_root}/rec1.wav\n"
                     f"3.0,6.0,Cyanocitta cristata,Blue Jay,0.3000,{audio_root}/sub/rec4.ogg\n"
                     f"6.0,9.0,Zonotrichia albicollis,White-throated Sparrow,0.6000,{audio_root}/sub/rec4.ogg\n")
    assert read_annotations(combined, audio_root, TAXONOMY) == [
        Event("rec1.wav", 0.0, 3.0, "amerob"), Event("sub/rec4.ogg", 3.0, 6.0, "blujay"),
        Event("sub/rec4.ogg", 6.0, 9.0, "Zonotrichia albicollis")]
    assert [e.label for e in read_annotations(combined, audio_root)] == [
        "Turdus migratorius", "Cyanocitta cristata", "Zonotrichia albicollis"]
    assert len(read_annotations(combined, audio_root, TAXONOMY, min_confidence=0.5)) == 2
    per_file = write(tmp_path / "rec3.BirdNET.results.csv", "Start (s),End (s),Scientific name,Common name,Confidence\n"
                     "12.0,15.0,Lipaugus vociferans,Screaming Piha,0.7700\n")
    assert read_annotations(per_file, audio_root, TAXONOMY) == [Event("sub/rec3.mp3", 12.0, 15.0, "scrpih1")]


def test_folder_mode_reads_every_form_recursively(tmp_path, audio_root):
    folder = tmp_path / "annotations"
    write(folder / "b" / "rec1.BirdNET.results.txt", "0.0\t3.0\tTurdus migratorius, American Robin\t0.9\n")
    write(folder / "a.csv", "file,start_s,end_s,label\nrec2.flac,1,2,blujay\n")
    write(folder / "c" / "rec3.BirdNET.results.csv", "Start (s),End (s),Scientific name,Common name,Confidence\n"
          "3.0,6.0,Lipaugus vociferans,Screaming Piha,0.8\n")
    write(folder / "rec4.Table.1.selections.txt", "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLabel\n"
          "1\tSpectrogram 1\t1\t0.5\t1.0\tnorcar\n")
    write(folder / "README.txt", "Annotations made in 2024.\n")
    write(folder / "BirdNET_analysis_params.csv", "File splitting duration,Segment length\n600,3.0\n")
    write(folder / "empty.BirdNET.results.txt", "")
    write(folder / ".hidden" / "x.csv", "file,start_s,end_s,label\nrec1.wav,0,1,zzz\n")
    events = read_annotations(folder, audio_root, TAXONOMY)
    assert events == [Event("rec1.wav", 0.0, 3.0, "amerob"), Event("rec2.flac", 1.0, 2.0, "blujay"),
                      Event("sub/rec3.mp3", 3.0, 6.0, "scrpih1"), Event("sub/rec4.ogg", 0.5, 1.0, "norcar")]
    with pytest.raises(AnnotationError, match="no annotation files"):
        read_annotations(write(tmp_path / "none" / "notes.txt", "hello\n").parent)


def test_audio_found_by_name_in_the_tables_sub_folder_when_the_stem_repeats(tmp_path, audio_root):
    folder = tmp_path / "annotations"
    write(folder / "a" / "dup.BirdNET.results.txt", "0\t3\tamerob\t0.9\n")
    assert read_annotations(folder, audio_root)[0].file == "a/dup.wav"
    with pytest.raises(AnnotationError, match=r"dup\.BirdNET\.results\.txt: several audio files.*'dup'"):
        read_annotations(folder / "a" / "dup.BirdNET.results.txt", audio_root)


def test_errors_name_the_file_and_line(tmp_path, audio_root):
    cases = {
        "file,start_s,end_s,label\nrec1.wav,1,2,a\nrec1.wav,3,3,a\n": r"bad\.csv, line 3: .*ends",
        "file,start_s,end_s,label\n\nrec1.wav,x,2,a\n": r"bad\.csv, line 3: 'x' is not a number",
        "file,start_s,end_s,label\nrec1.wav,1,nan,a\n": r"bad\.csv, line 2: 'nan' is not a finite number",
        "file,start_s,end_s,label\nrec1.wav,1,2,\n": r"bad\.csv, line 2: no label",
        "a;b;c\n1;2;3\n": r"bad\.csv: not an annotation file",
    }
    for text, message in cases.items():
        with pytest.raises(AnnotationError, match=message):
            read_annotations(write(tmp_path / "bad.csv", text), audio_root)
    with pytest.raises(AnnotationError, match=r"rec1\.txt, line 2: '1,5' is not a number"):
        read_annotations(write(tmp_path / "rec1.txt", "0\t1\tamerob\n1,5\t2\tamerob\n"), audio_root)
    with pytest.raises(AnnotationError, match=r"nothing\.BirdNET\.results\.txt: no audio file named 'nothing'"):
        read_annotations(write(tmp_path / "nothing.BirdNET.results.txt", "0\t3\tamerob\n"), audio_root)
    with pytest.raises(AnnotationError, match=r"rec1\.BirdNET\.results\.txt: names no audio file.*`audio_root`"):
        read_annotations(write(tmp_path / "rec1.BirdNET.results.txt", "0\t3\tamerob\n"))
    with pytest.raises(AnnotationError, match="not found"):
        read_annotations(tmp_path / "absent.csv")
    with pytest.raises(AnnotationError, match="`audio_root` is not a folder"):
        read_annotations(tmp_path / "bad.csv", tmp_path / "no-such-folder")
    assert issubclass(AnnotationError, BirdembError)


def test_map_labels():
    assert map_labels("Lipaugus vociferans_Screaming Piha", TAXONOMY) == ("scrpih1",)
    assert map_labels("Lipaugus vociferans, Screaming Piha", TAXONOMY) == ("scrpih1",)
    assert map_labels("LIPAUGUS VOCIFERANS", TAXONOMY) == ("scrpih1",)
    assert map_labels(" amerob ", TAXONOMY) == ("amerob",)
    assert map_labels("Unknown bird_Nobody", TAXONOMY) == ("Unknown bird_Nobody",)
    assert map_labels("Lipaugus vociferans_Screaming Piha") == ("Lipaugus vociferans_Screaming Piha",)
    # a scientific name with two eBird codes stands for both
    assert map_labels("Oenanthe hispanica_Wheatear", {"oenanthe hispanica": ("bkewhe1", "blewhe1")}) == (
        "bkewhe1", "blewhe1")


def brute_force(events, files, starts, ends, species, min_overlap):
    labels = np.zeros((len(files), len(species)), dtype=np.float32)
    annotated = np.array([any(e.file == f for e in events) for f in files], dtype=bool)
    for i, (f, s, t) in enumerate(zip(files, starts, ends)):
        for e in events:
            if e.file == f and e.label in species and min(e.end_s, t) - max(e.start_s, s) > min_overlap:
                labels[i, species.index(e.label)] = 1
    return labels, annotated


@pytest.mark.parametrize("min_overlap", [0.0, 0.5, 2.0])
def test_events_to_windows_matches_a_brute_force_loop(min_overlap):
    rng = np.random.default_rng(int(min_overlap * 10))
    names = [f"f{k}.wav" for k in range(6)]
    files, starts = [], []
    for name in names[:5]:  # f5 has events but no windows; overlapping 5 s windows, hop 2.5 s
        k = rng.integers(3, 12)
        files += [name] * k
        starts += list(np.arange(k) * 2.5)
    order = rng.permutation(len(files))  # windows in no particular order
    files = [files[i] for i in order]
    starts = np.asarray(starts)[order]
    ends = starts + 5.0
    ends[:3] = starts[:3] + 1.2  # a few short (last partial) windows
    species = ["a", "b", "c"]
    events = [Event(names[rng.integers(6)] if k else "f0.wav", float(s), float(s + rng.choice([0.2, 1.0, 3.0, 14.0])),
                    str(rng.choice(["a", "b", "c", "x"]))) for k, s in enumerate(rng.uniform(-2, 30, size=60))]
    events += [Event("f4.wav", 5.0, 7.5, "a")]  # touches window boundaries exactly
    events = [e for e in events if e.file != "f3.wav" or e.label == "x"]  # a file with only outside labels
    labels, annotated = events_to_windows(events, files, starts, ends, species, min_overlap)
    expected, expected_annotated = brute_force(events, files, starts, ends, species, min_overlap)
    assert labels.dtype == np.float32 and annotated.dtype == np.bool_
    assert labels.shape == (len(files), 3)
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(annotated, expected_annotated)
    assert labels.sum() > 0 and (annotated & (labels.sum(axis=1) == 0)).any()


def test_events_to_windows_edge_cases():
    species = ["a"]
    labels, annotated = events_to_windows([], ["f.wav"], [0.0], [5.0], species)
    assert labels.tolist() == [[0.0]] and annotated.tolist() == [False]
    labels, annotated = events_to_windows([Event("f.wav", 5.0, 6.0, "a")], [], [], [], species)
    assert labels.shape == (0, 1) and annotated.shape == (0,)
    # an event ending exactly where a window starts does not overlap it
    files, starts = ["f.wav"] * 3, np.array([0.0, 5.0, 10.0])
    labels, annotated = events_to_windows([Event("f.wav", 4.0, 5.0, "a"), Event("g.wav", 0, 1, "a")],
                                          np.array(files, dtype=object), starts, starts + 5, species)
    assert labels[:, 0].tolist() == [1, 0, 0] and annotated.tolist() == [True] * 3
    with pytest.raises(AnnotationError, match="differ in length"):
        events_to_windows([], ["f.wav"], [0.0, 5.0], [5.0], species)


# -- the real piha corpus --------------------------------------------------------------------

def window_grid(audio_dir: Path, files: list[str]):
    """5 s windows [5k, 5k + 5) of each file; a last partial window only if it holds >= 1 s."""
    import soundfile as sf
    grid_files, starts, ends = [], [], []
    for name in files:
        duration = sf.info(str(audio_dir / name)).duration
        for k in range(math.ceil(duration / 5)):
            start, end = 5.0 * k, min(5.0 * k + 5.0, duration)
            if end - start >= 1.0:
                grid_files.append(name)
                starts.append(start)
                ends.append(start + 5.0)
    return grid_files, np.asarray(starts), np.asarray(ends)


def test_piha_annotations_map_onto_windows(piha):
    events = read_annotations(piha / "annotations.csv", piha / "audio")
    assert len(events) == 254
    files = sorted({e.file for e in events})
    assert len(files) == 11 and all((piha / "audio" / f).is_file() for f in files)
    assert {e.label for e in events} == {"scrpih1"}
    assert read_annotations(piha, piha / "audio") == events  # folder mode: the other files are no annotations

    grid_files, starts, ends = window_grid(piha / "audio", files)
    labels, annotated = events_to_windows(events, grid_files, starts, ends, ["scrpih1", "amerob"])
    assert annotated.all() and labels[:, 1].sum() == 0
    by_window = {(f, int(s // 5)): bool(y) for f, s, y in zip(grid_files, starts, labels[:, 0])}
    # by hand from annotations.csv: ScreamingPiha1.wav (32.6 s) calls at 0.55-3.67, 8.77-14.63,
    # 21.0-24.95, 27.6-28.3 and 28.7-32.1 s: nothing in 15-20 s; 7 windows, the last 2.6 s long
    assert [by_window[("ScreamingPiha1.wav", k)] for k in range(7)] == [True, True, True, False, True, True, True]
    assert ("ScreamingPiha1.wav", 7) not in by_window
    with open(piha / "annotations.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for f, s, t, y in zip(grid_files, starts, ends, labels[:, 0]):
        assert bool(y) == any(r["file"] == f and min(float(r["end_s"]), t) - max(float(r["start_s"]), s) > 0
                              for r in rows), (f, s)
    assert 0 < labels[:, 0].sum() < len(grid_files)  # calls and gaps both present
