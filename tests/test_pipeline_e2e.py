"""The whole pipeline on generated audio, through the command line: extract -> train-head ->
bundle -> submit (and the Kaggle script from the bundle gives the same file)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

from birdemb.cli import main
from tests.helpers.audio import write_audio, write_ogg


def test_extract_train_bundle_submit(tmp_path):
    train = tmp_path / "train_audio"
    for i in range(4):  # two "species" with distinct pitch, four clips each
        write_audio(train / "amerob" / f"XC{i}.wav", 6.0 + i, 48000, seed=i, freq=2000)
        write_audio(train / "norcar" / f"XC{10 + i}.wav", 6.0 + i, 32000, seed=10 + i, freq=6000)
    soundscapes = tmp_path / "test_soundscapes"
    write_ogg(soundscapes / "site1.ogg", 60.0, 32000, seed=20)
    write_audio(soundscapes / "site2.wav", 22.0, 32000, seed=21, freq=6000)
    taxonomy = tmp_path / "eBird_Taxonomy_v2021.csv"  # BirdNET's scientific names -> eBird codes
    taxonomy.write_text("SPECIES_CODE,PRIMARY_COM_NAME,SCI_NAME\namerob,American Robin,Turdus migratorius\n"
                        "norcar,Northern Cardinal,Cardinalis cardinalis\n")
    store, run, bundle = tmp_path / "store", tmp_path / "run", tmp_path / "bundle"

    assert main(["extract", "--model", "birdnet", "--audio", str(train), "--store", str(store),
                 "--dataset", "train", "--workers", "1", "--quiet"]) == 0
    assert main(["train-head", "--store", str(store), "--embeddings", "birdnet", "--surrogate", "birdnet",
                 "--labels", "folder", "--loss", "bce", "--epochs", "3", "--taxonomy", str(taxonomy),
                 "--out", str(run)]) == 0
    assert json.loads((run / "species.json").read_text()) == ["amerob", "norcar"]
    assert main(["bundle", "--run", str(run), "--out", str(bundle)]) == 0
    assert main(["submit", "--bundle", str(bundle), "--audio", str(soundscapes), "--out",
                 str(tmp_path / "submission.csv"), "--workers", "2", "--quiet"]) == 0

    with open(tmp_path / "submission.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["row_id", "amerob", "norcar"]
    assert [r[0] for r in rows[1:]] == [f"site1_{5 * k}" for k in range(1, 13)] + [f"site2_{5 * k}" for k in range(1, 6)]  # 22 s: 4 + a 2 s tail
    assert all(0 < float(v) < 1 for r in rows[1:] for v in r[1:])

    # --run resolves the same bundle in place; the Kaggle script reads the bundle alone
    assert main(["submit", "--run", str(run), "--audio", str(soundscapes), "--out", str(tmp_path / "from_run.csv"),
                 "--workers", "1", "--quiet"]) == 0
    result = subprocess.run([sys.executable, str(bundle / "kaggle_submit.py"), "--audio", str(soundscapes),
                             "--out", str(tmp_path / "kaggle.csv"), "--quiet"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = (tmp_path / "submission.csv").read_bytes()
    assert (tmp_path / "from_run.csv").read_bytes() == expected
    assert (tmp_path / "kaggle.csv").read_bytes() == expected
