"""The app's pages under Streamlit's own AppTest harness, on a small toy store, and its safety
rules: audio only from the store's audio folders (`../` refused and logged), labels that two
writers at once never lose, and a store left unwritten."""
from __future__ import annotations

import csv
import logging
import multiprocessing
import os

import numpy as np
import pytest

from birdemb.cli import main
from birdemb.explore.app import audio_serving, data, labels_file, neighbours, retrain, review
from birdemb.labels.annotations import read_annotations
from tests.helpers.audio import write_steady_tone
from tests.helpers.paths import REPOSITORY

TOY = "tests.helpers.toy_backbone:ToyBackbone"
SCRIPT = REPOSITORY / "birdemb" / "explore" / "app" / "streamlit_app.py"
PAGES = ["Overview", "Windows", "Map", "Search", "Review and label", "Retrain"]


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("toyapp")
    audio = root / "train_audio"
    for k in range(3):  # low tones are norcar, high tones amerob (the toy's classifier)
        write_steady_tone(audio / "norcar" / f"XC{k}.wav", 11.0, 16000, 1000, seed=k)
        write_steady_tone(audio / "amerob" / f"XC{10 + k}.flac", 11.0, 22050, 3000, seed=10 + k)
    assert main(["extract", "--model", TOY, "--audio", str(audio), "--store", str(root / "store"), "--dataset",
                 "train", "--workers", "1", "--quiet"]) == 0
    return root


def snapshot(folder):
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())


def test_every_page_renders_and_a_click_saves_a_label(toy_store, monkeypatch):
    from streamlit.testing.v1 import AppTest

    before = snapshot(toy_store / "store")
    config = data.AppConfig(str(toy_store / "store"), workdir=str(toy_store / "work"))
    monkeypatch.setenv("BIRDEMB_APP", config.to_json())
    at = AppTest.from_file(str(SCRIPT), default_timeout=120).run()
    for page in PAGES:
        at.sidebar.radio(key="page").set_value(page).run()
        assert not at.exception and not at.error, (page, at.exception, at.error)
        assert at.header[0].value.startswith(page.split()[0])
    at.sidebar.radio(key="page").set_value("Windows").run()
    assert len(at.get("audio")) == 8  # one page of windows, each with its player
    at.sidebar.radio(key="page").set_value("Search").run()
    at.button(key="s-go").click().run()
    assert any("nearest windows by exact cosine" in c.value for c in at.caption)
    at.sidebar.radio(key="page").set_value("Review and label").run()
    species = at.selectbox(key="r-species").value
    at.button[0].click().run()  # "yes" on the first proposed window
    events = read_annotations(config.annotations)
    assert [e.label for e in events] == [species]
    assert snapshot(toy_store / "store") == before  # the app never writes into the store


def test_windows_cut_from_the_original_recording(toy_store):
    roots = data.all_audio_roots(str(toy_store / "store"))
    assert roots == [str((toy_store / "train_audio").resolve())]
    samples, rate, begin = audio_serving.cut(roots, "amerob/XC10.flac", 5.0, 10.0, context_s=2.0)
    import soundfile as sf

    from birdemb.runtime.audio import resample

    whole, native = sf.read(toy_store / "train_audio" / "amerob" / "XC10.flac", dtype="float32")
    expected = resample(whole[3 * native:11 * native], native, rate)  # [3, 11): clipped at the end
    assert begin == 3.0 and rate == audio_serving.PLAY_RATE
    np.testing.assert_allclose(samples, expected, atol=1e-5)
    wav = audio_serving.wav_bytes(samples, rate)
    assert wav[:4] == b"RIFF" and len(wav) == 44 + 2 * len(samples)
    # the spectrogram's peak row is the tone's frequency (3 kHz)
    db = audio_serving.spectrogram(samples, rate)
    assert abs(db.mean(axis=1).argmax() * rate / 512 - 3000) < rate / 512


@pytest.mark.parametrize("request_path", ["../outside.wav", "norcar/../../outside.wav", "/etc/passwd",
                                          "norcar/link.wav"])
def test_audio_outside_the_store_folders_is_refused_and_logged(toy_store, request_path, caplog):
    outside = toy_store / "outside.wav"
    write_steady_tone(outside, 1.0, 16000, 1000)
    link = toy_store / "train_audio" / "norcar" / "link.wav"
    if not link.is_symlink():
        link.symlink_to(outside)
    roots = [str(toy_store / "train_audio")]
    with caplog.at_level(logging.WARNING, logger="birdemb.app"), pytest.raises(audio_serving.AudioRefused,
                                                                               match="refused"):
        audio_serving.cut(roots, request_path, 0.0, 1.0)
    assert any("refused audio request" in r.getMessage() for r in caplog.records)


def _click_many(annotations, offset: int, n: int) -> None:
    for i in range(n):
        labels_file.record(annotations, f"f{offset}.wav", 5.0 * i, 5.0 * i + 5, "norcar", "yes" if i % 3 else "no")


def test_two_tabs_labelling_at_once_lose_nothing(tmp_path):
    annotations = tmp_path / "labels" / "annotations.csv"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_click_many, args=(annotations, k, 40)) for k in range(2)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
    assert [w.exitcode for w in writers] == [0, 0]
    decided = labels_file.read_decisions(annotations)
    assert len(decided) == 80
    events = read_annotations(annotations)
    assert len(events) == sum(1 for d in decided.values() if d.decision == "yes") == 2 * 26
    assert not [p for p in annotations.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_changed_decision_replaces_the_old_one(tmp_path):
    annotations = tmp_path / "annotations.csv"
    labels_file.record(annotations, "a.wav", 0, 5, "norcar", "yes")
    labels_file.record(annotations, "a.wav", 0, 5, "norcar", "no")
    labels_file.record(annotations, "a.wav", 0, 5, "amerob", "unsure")
    assert {d.label: d.decision for d in labels_file.read_decisions(annotations).values()} == {
        "norcar": "no", "amerob": "unsure"}
    with open(annotations) as handle:
        assert list(csv.reader(handle)) == [["file", "start_s", "end_s", "label"]]


def test_review_queue_and_exact_search_agree_with_their_definitions(toy_store):
    store_dir = str(toy_store / "store")
    windows = data.load_windows(store_dir, "toy")
    column = windows.table[data.SCORE_PREFIX + "norcar"].to_numpy()
    top = review.queue(windows.table, "norcar", set(), uncertain_first=False, limit=3)
    assert column[top].tolist() == sorted(column, reverse=True)[:3]
    first = windows.table.row(top[0], named=True)
    skipped = review.queue(windows.table, "norcar", {(first["file"], round(first["start_s"], 3), "norcar")},
                           uncertain_first=False, limit=3)
    assert top[0] not in skipped and skipped[:2] == top[1:]
    found, _ = neighbours.nearest(windows, store_dir, "toy", 0, k=4)
    e = windows.embeddings / np.linalg.norm(windows.embeddings, axis=1, keepdims=True)
    assert [f.row for f in found][0] == 0
    np.testing.assert_allclose([f.similarity for f in found], np.sort(e @ e[0])[::-1][:4], rtol=1e-5)


def test_retrain_command_keeps_the_previous_runs_data_options(tmp_path):
    previous = tmp_path / "run"
    previous.mkdir()
    (previous / "config.json").write_text('{"train_config": {"taxonomy": "/t.csv", "val_fraction": 0.34, '
                                          '"seed": 0, "datasets": ["train"], "metadata": null}}')
    argv = retrain.command("/s", "birdnet", "birdnet", "/a.csv", "/out", "species", str(previous), "/other.csv")
    assert argv[1:4] == ["-m", "birdemb", "train-head"]
    text = " ".join(argv)
    assert "--taxonomy /t.csv" in text and "/other.csv" not in text and "--val-fraction 0.34" in text
    assert "--dataset train" in text and "--labels species --annotations /a.csv --out /out" in text
    assert os.path.basename(retrain.log_path(tmp_path / "runs" / "run-1")) == "run-1.log"
