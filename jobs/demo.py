"""`make demo`: the main job on the real xc10 corpus, or on a generated one when it is absent.

Stages: extract BirdNET embeddings of the train clips and the soundscape into a feature
store; train heads on pseudo multi-labels (the default, which adds BirdNET's own logit where it
knows a species and learns a correction to it, and one from scratch) and compare each with the surrogate's
passthrough against the held-out files' folder species; bundle the
best head and write submission.csv for the soundscape; explore the store (EDA and PaCMAP). Every artefact lands under demo-output/ (or $BIRDEMB_DEMO_OUT).
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
    from birdemb.extract.job import ExtractConfig, extract
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


def stage_train(data: Path, store: Path, synthetic: bool) -> Path:
    from birdemb.training.config import DataOptions, FitOptions, LabelOptions, TrainConfig
    from birdemb.training.fit import train_head

    # BirdNET hears no bird in generated tones and knows none of their made-up species, so
    # pseudo-labels would be empty there: the synthetic corpus trains on folder labels.
    labels = "folder" if synthetic else "species"
    runs = {}
    for init in ("auto", "scratch"):
        banner(f"train a linear head on BirdNET embeddings, {labels} labels, init {init}")
        run_dir = OUT / f"run-{init}"
        result = train_head(TrainConfig(
            DataOptions(store=str(store), embeddings="birdnet", surrogate="birdnet", datasets=["train"],
                        metadata=str(data / "train_metadata.csv"), taxonomy=str(data / "eBird_Taxonomy_v2021.csv")),
            LabelOptions(scheme=labels), FitOptions(init=init), str(run_dir),
        ))
        print(result.line())
        runs[run_dir] = tuple(np.nan_to_num([result.metrics["val_macro_auroc"], result.metrics["val_macro_f1"]]))
    return max(runs, key=runs.get)


def stage_submit(data: Path, run_dir: Path) -> tuple[Path, Path]:
    from birdemb.deploy.bundle import build_bundle
    from birdemb.deploy.submit import write_submission

    banner(f"bundle {run_dir.name} and score the soundscape on the CPU")
    bundle = build_bundle(run_dir, OUT / "bundle", overwrite=True)
    submission = OUT / "submission.csv"
    print(write_submission(bundle, data / "unlabeled_soundscapes", submission).line())
    return bundle, submission


def stage_explore(data: Path, store: Path) -> tuple[Path, Path]:
    from birdemb.explore.figures import projection_figure
    from birdemb.explore.projection import window_projection
    from birdemb.explore.report import run_eda
    from birdemb.labels.species import read_taxonomy

    banner("explore: pseudo-label statistics, co-occurrence, PaCMAP")
    taxonomy = read_taxonomy(data / "eBird_Taxonomy_v2021.csv")
    report = run_eda(store, "birdnet", OUT / "eda", taxonomy=taxonomy)
    projection = window_projection(store, "birdnet", "train", top_n=10, max_points=20000, seed=0,
                                   taxonomy=taxonomy, threshold=0.5)
    figure = projection_figure([(projection.points, projection.labels, projection.title)],
                               OUT / "pacmap-train.png", title="BirdNET embeddings of the train windows")
    return report.index, figure


def main() -> int:
    data, description = corpus()
    print(f"birdemb demo on {description}")
    store = OUT / "store"
    stage_extract(data, store)
    best_run = stage_train(data, store, synthetic=description.startswith("SYNTHETIC"))
    bundle, submission = stage_submit(data, best_run)
    eda_index, pacmap = stage_explore(data, store)
    banner(f"artefacts (made from {description.split(':')[0]} audio)")
    print(f"feature store:   {store}  (`birdemb info {store}`)")
    print(f"trained heads:   {OUT / 'run-auto'}, {OUT / 'run-scratch'} (best: {best_run.name})")
    print(f"bundle:          {bundle}")
    print(f"submission:      {submission}")
    print(f"EDA report:      {eda_index}")
    print(f"PaCMAP figure:   {pacmap}")
    print(f"open the app:    .venv/bin/birdemb app --store {store} --run {best_run} --workdir {OUT / 'app'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
