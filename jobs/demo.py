"""`make demo`: the main job on the real xc10 corpus, or on a generated one when it is absent.

Stages: extract BirdNET embeddings of the train clips and the soundscape into a feature
store and summarise it. Every artefact lands under demo-output/ (or $BIRDEMB_DEMO_OUT).
Rerunning resumes: stored files are not extracted again. BIRDEMB_DEMO_SYNTHETIC=1 forces the
generated corpus.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
XC10 = ROOT.parent / "shared" / "data" / "xc10"
OUT = Path(os.environ.get("BIRDEMB_DEMO_OUT", ROOT / "demo-output"))


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def synthetic_corpus(folder: Path) -> Path:
    """A small BirdCLEF-shaped corpus of generated calls: 4 'species' x 3 clips, a soundscape,
    a metadata file and a taxonomy. Labelled SYNTHETIC wherever it is used."""
    import soundfile as sf

    if (folder / "train_metadata.csv").exists():
        return folder
    rng = np.random.default_rng(7)
    species = {"synaaa": 2500.0, "synbbb": 4000.0, "synccc": 6000.0, "synddd": 1800.0}
    rows = ["primary_label,secondary_labels,filename"]
    for code, freq in species.items():
        for clip in range(3):
            rate = (32000, 44100, 48000)[clip]
            seconds = 6 + 3 * clip
            t = np.arange(int(seconds * rate)) / rate
            call = np.sin(2 * np.pi * (freq + 300 * np.sin(2 * np.pi * 8 * t)) * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
            audio = (0.3 * call + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
            path = folder / "train_audio" / code / f"SYN{clip}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, audio, rate)
            rows.append(f"{code},[],{code}/SYN{clip}.flac")
    (folder / "train_metadata.csv").write_text("\n".join(rows) + "\n")
    scape = folder / "unlabeled_soundscapes" / "synthetic_scape.flac"
    scape.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(60 * 32000) / 32000
    sf.write(scape, (0.2 * np.sin(2 * np.pi * 4000 * t) * (np.sin(2 * np.pi * 0.1 * t) > 0.5)
                     + 0.02 * rng.standard_normal(t.size)).astype(np.float32), 32000)
    (folder / "eBird_Taxonomy_v2021.csv").write_text(
        "SPECIES_CODE,PRIMARY_COM_NAME,SCI_NAME\n"
        + "\n".join(f"{code},Synthetic {code},Synthetica {code}" for code in species) + "\n"
    )
    return folder


def corpus() -> tuple[Path, str]:
    if (XC10 / "train_audio").is_dir() and not os.environ.get("BIRDEMB_DEMO_SYNTHETIC"):
        return XC10, "REAL: xc10, 100 xeno-canto clips of 10 species and a 120 s field soundscape"
    folder = synthetic_corpus(OUT / "synthetic-corpus")
    return folder, "SYNTHETIC: generated tones (../shared/data/xc10 is absent), not bird audio"


def stage_extract(data: Path, store: Path) -> None:
    from birdemb.commands.info import format_table
    from birdemb.extract import ExtractConfig, extract
    from birdemb.store import info

    for dataset, audio, metadata in (
        ("train", data / "train_audio", data / "train_metadata.csv"),
        ("soundscape", data / "unlabeled_soundscapes", None),
    ):
        banner(f"extract BirdNET embeddings: {dataset} ({audio})")
        summary = extract(ExtractConfig(
            audio=str(audio), store=str(store), model="birdnet", dataset=dataset,
            metadata=str(metadata) if metadata else None, progress=sys.stderr.isatty(),
        ))
        print(summary.line())
    banner(f"feature store {store}")
    print(format_table(info(store)))


def main() -> int:
    data, description = corpus()
    print(f"birdemb demo on {description}")
    store = OUT / "store"
    stage_extract(data, store)
    banner("artefacts")
    print(f"feature store: {store}  (read it with birdemb.store.scan or `birdemb info {store}`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
