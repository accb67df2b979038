"""Benchmark section: do heads learn? Judged against ground truth on real recordings.

For each labelled real corpus in ../shared/data (xc10: folder species; piha: time-stamped
annotations), k-fold by file: the heads are trained on the other folds' files with
`train-head` defaults and variants, bundled, and every held-out recording is scored window by
window through the submission path (`write_submission`, what `birdemb submit` runs). Beside
them, on the very same windows: BirdNET's own predictions (passthrough: from the stored logits,
and through `submit` as a `bundle --passthrough`), the default head blended with them
(`submit --blend 0.5`: 0.5 x head + 0.5 x passthrough for the species BirdNET knows, the head
alone for the others), and a scikit-learn reference, `LogisticRegression(class_weight="balanced")`
per species on standardised embeddings with the ground-truth labels of the training files. Some species are hidden from
the surrogate by giving train-head a taxonomy in which their scientific names do not match,
so the heads must learn them from the labels alone. Scores: macro ROC-AUC over each fold's
held-out windows (scored by the model that saw none of their files), averaged over the folds,
for the species BirdNET knows and for the hidden ones.
"""
from __future__ import annotations

import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench-output" / "quality"
FOLDS = 3
MODEL = "birdnet"


# ---------------------------------------------------------------- corpora and folds


# "numpy": BirdNET as birdemb runs it by default (numpy front end + network); "graph": the whole
# TFLite graph, for every store and bundle (what birdemb ran before the split; bench_grids sets it)
FRONT_END = "numpy"


def store_path(corpus: str, frame_grid: str) -> Path:
    """The corpus's store for a grid and front end (kept between runs; a new front end is a new store)."""
    parts = [f"store-{corpus}"] + ([frame_grid] if frame_grid != "cover" else []) + (["graph"] if FRONT_END == "graph" else [])
    return OUT / "-".join(parts)


def configured(bundle: Path) -> Path:
    """The bundle as FRONT_END runs it: with FRONT_END "graph", its split front end is removed,
    so inference runs the whole backbone.tflite."""
    if FRONT_END == "graph":
        manifest_path = bundle / "bundle.json"
        manifest = json.loads(manifest_path.read_text())
        for key in ("front_end", "network"):
            name = manifest["backbone"].pop(key, None)
            if name:
                manifest["files"].pop(name, None)
                (bundle / name).unlink()
        manifest_path.write_text(json.dumps(manifest, indent=1))
    return bundle


def extract(audio: Path, store: Path, dataset: str, metadata: Path | None = None, frame_grid: str = "cover") -> None:
    from birdemb.extract.job import ExtractConfig
    from birdemb.extract.job import extract as run_extract

    run_extract(ExtractConfig(audio=str(audio), store=str(store), model=MODEL, dataset=dataset,
                              metadata=str(metadata) if metadata else None, frame_grid=frame_grid, progress=False,
                              model_options={"front_end": FRONT_END} if FRONT_END != "numpy" else {}))


def fold_store(source: Path, target: Path, dataset: str, files: set[str]) -> Path:
    """A store holding only `files` of the source partition (same manifest, same rows)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from birdemb import store

    src = store.partition_dir(source, MODEL, dataset)
    dst = store.partition_dir(target, MODEL, dataset)
    dst.mkdir(parents=True)
    shutil.copyfile(src / store.MANIFEST, dst / store.MANIFEST)
    table = pa.concat_tables([store.read_part(p) for p in store.part_files(src)])
    table = table.filter(pc.is_in(table["file"], pa.array(sorted(files))))
    pq.write_table(table, dst / "part-0.parquet")
    return target


def flat_audio(audio_root: Path, files: list[str], folder: Path) -> dict[str, str]:
    """Symlinks to `files` in one flat folder (the submission reads a flat folder of
    soundscapes); returns submission stem -> stored file."""
    folder.mkdir(parents=True)
    stems = {}
    for file in files:
        name = file.replace("/", "__")
        (folder / name).symlink_to((audio_root / file).resolve())
        stems[Path(name).stem] = file
    return stems


def hiding_taxonomy(taxonomy: Path, hidden_names: set[str], out: Path) -> Path:
    """The taxonomy with the scientific names of `hidden_names` changed, so BirdNET's labels
    for those species map to nothing: the surrogate does not know them."""
    with open(taxonomy, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["SCI_NAME"].strip().lower() in hidden_names:
            row["SCI_NAME"] = "hidden " + row["SCI_NAME"]
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


# ---------------------------------------------------------------- scorers


def submission_scores(bundle: Path, audio: Path, stems: dict[str, str], blend: float = 1.0
                      ) -> dict[tuple[str, int], np.ndarray]:
    """(stored file, window) -> probabilities, read back from a real submission.csv
    (`blend` < 1: `birdemb submit --blend`)."""
    from birdemb.deploy.submit import write_submission

    out = bundle.parent / f"{bundle.name}-blend{blend:g}-submission.csv"
    write_submission(bundle, audio, out, workers=0, blend=blend)
    scores = {}
    with open(out, newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            stem, end = row[0].rsplit("_", 1)
            scores[(stems[stem], int(end) // 5 - 1)] = np.asarray(row[1:], dtype=np.float64)
    return scores


def logistic_reference(x_train, y_train, x_test) -> np.ndarray:
    """scikit-learn's LogisticRegression(class_weight="balanced") per species on standardised
    embeddings; a species without training positives scores 0."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    a, b = scaler.transform(x_train), scaler.transform(x_test)
    out = np.zeros((len(x_test), y_train.shape[1]))
    for j in range(y_train.shape[1]):
        if 0 < y_train[:, j].sum() < len(y_train):
            model = LogisticRegression(class_weight="balanced", max_iter=2000).fit(a, y_train[:, j])
            out[:, j] = model.decision_function(b)
    return out


def macro_auroc(truth: np.ndarray, scores: np.ndarray, columns: list[int], fold_of: np.ndarray) -> float | None:
    """Macro ROC-AUC on each fold's held-out windows (the model that scored them saw none of
    their files), averaged over the folds: pooling folds would also rank one fold's model
    against another's."""
    from birdemb.training.metrics import per_species_auroc

    if not columns:
        return None
    per_fold = []
    for fold in np.unique(fold_of):
        rows = fold_of == fold
        values = per_species_auroc(truth[rows][:, columns], scores[rows][:, columns])
        if np.isfinite(values).any():
            per_fold.append(float(np.nanmean(values)))
    return float(np.mean(per_fold)) if per_fold else None


# ---------------------------------------------------------------- one corpus


BLEND = 0.5  # `submit --blend`: BLEND x the default head + (1 - BLEND) x passthrough (species BirdNET knows)
PASSTHROUGH_BUNDLE = "passthrough bundle through `submit` (`bundle --passthrough`)"
BLEND_NAME = f"blend: default head x {BLEND:g} + passthrough x {1 - BLEND:g} (`submit --blend {BLEND:g}`)"
VARIANTS = {  # name -> train-head options beyond the corpus's own
    "default head (`--init auto`)": {},
    "`--init scratch`": {"init": "scratch"},
    "`--init surrogate`": {"init": "surrogate"},
    "default with `--solver adam`": {"solver": "adam"},
    "default with `--penalty 0` (no L2)": {"penalty": 0.0},
}


def evaluate_corpus(name: str, audio: Path, store: Path, dataset: str, species: list[str], truth_of,
                    labels: dict, taxonomy: Path, hidden: set[str], work: Path) -> dict:
    """k-fold by file; returns per scorer the pooled held-out scores and the truth."""
    from birdemb import store as store_mod
    from birdemb.deploy.bundle import build_bundle
    from birdemb.deploy.passthrough import build_passthrough_bundle
    from birdemb.labels.mapping import map_species
    from birdemb.labels.species import SpeciesError, read_taxonomy
    from birdemb.training.config import DataOptions, FitOptions, LabelOptions, TrainConfig
    from birdemb.training.fit import train_head
    from birdemb.training.split import split_by_file

    rows = store_mod.scan(store, MODEL, dataset).sort("file", "window").collect()
    files = rows["file"].to_list()
    groups = np.asarray(files)
    strata = rows["species"].to_list()
    truth = truth_of(rows)  # [n, S] ground truth of every stored window
    embeddings = rows["embedding"].to_numpy()
    manifest = store_mod.manifest(store, MODEL, dataset)
    mapping = map_species(manifest["labels"], species, read_taxonomy(taxonomy))
    passthrough = mapping.species_logits(rows["logits"].to_numpy())
    index = {(f, int(w)): i for i, (f, w) in enumerate(zip(files, rows["window"].to_list()))}
    scores = {v: np.full(truth.shape, np.nan) for v in VARIANTS}
    scores["logistic regression (sklearn)"] = np.full(truth.shape, np.nan)
    scores[BLEND_NAME] = np.full(truth.shape, np.nan)
    scores[PASSTHROUGH_BUNDLE] = np.full(truth.shape, np.nan)
    try:
        passthrough_bundle, _ = build_passthrough_bundle(MODEL, work / "species.txt", work / "bundle-passthrough",
                                                         taxonomy=taxonomy)
        passthrough_bundle = configured(passthrough_bundle)
    except SpeciesError:  # BirdNET knows none of the species (all hidden): nothing to pass through
        passthrough_bundle = None
    seconds = {v: 0.0 for v in VARIANTS}
    fold_of = np.full(len(files), -1)
    for fold in range(FOLDS):
        train_rows, test_rows = split_by_file(groups, strata, folds=FOLDS, fold=fold, seed=0)
        fold_of[test_rows] = fold
        train_files = set(groups[train_rows].tolist())
        test_files = sorted(set(groups[test_rows].tolist()))
        fold_dir = work / f"fold{fold}"
        fold_root = fold_store(store, fold_dir / "store", dataset, train_files)
        stems = flat_audio(audio, test_files, fold_dir / "test_audio")
        scores["logistic regression (sklearn)"][test_rows] = logistic_reference(
            embeddings[train_rows], truth[train_rows], embeddings[test_rows])
        for number, (variant, options) in enumerate(VARIANTS.items()):
            started = time.perf_counter()
            run = fold_dir / f"run-{number}"
            config = TrainConfig(DataOptions(str(fold_root), MODEL, MODEL, taxonomy=str(taxonomy),
                                             species_list=str(work / "species.txt")),
                                 LabelOptions(**labels), FitOptions(**options), str(run))
            train_head(config)
            seconds[variant] += time.perf_counter() - started
            bundle = configured(build_bundle(run, fold_dir / f"bundle-{run.name}"))
            submitted = [(variant, bundle, 1.0)]
            if number == 0:
                submitted.append((BLEND_NAME, bundle, BLEND))
                if passthrough_bundle is not None:
                    submitted.append((PASSTHROUGH_BUNDLE, passthrough_bundle, 1.0))
            for scorer, scored, blend in submitted:
                for (file, window), p in submission_scores(scored, fold_dir / "test_audio", stems, blend).items():
                    if (file, window) in index:
                        # logit of the submitted probability: AUROC only ranks, and logits keep -inf apart
                        scores[scorer][index[(file, window)]] = (np.log(np.clip(p, 1e-12, 1))
                                                               - np.log1p(-np.clip(p, 0, 1 - 1e-12)))
    known = [j for j, s in enumerate(species) if s not in hidden and mapping.index[j] >= 0]
    hidden_cols = [j for j, s in enumerate(species) if s in hidden]
    table = {}
    for variant, values in scores.items():
        missing = int(np.isnan(values).any(axis=1).sum())
        table[variant] = {"known": macro_auroc(truth, np.nan_to_num(values, nan=-1e9), known, fold_of),
                          "hidden": macro_auroc(truth, np.nan_to_num(values, nan=-1e9), hidden_cols, fold_of),
                          "unscored_windows": missing, "train_s": seconds.get(variant)}
    table["passthrough (BirdNET's own predictions)"] = {
        "known": macro_auroc(truth, passthrough, known, fold_of), "hidden": None, "unscored_windows": 0,
        "train_s": None}
    return {"corpus": name, "windows": len(rows), "files": len(set(files)), "species": species,
            "known": [species[j] for j in known], "hidden": [species[j] for j in hidden_cols], "table": table}


def xc10_corpus(work: Path, quick: bool, frame_grid: str = "cover") -> dict | None:
    xc10 = SHARED / "xc10"
    if not (xc10 / "train_audio").is_dir():
        return None
    from birdemb.labels.folders import folder_matrices
    from birdemb.labels.species import species_from_metadata

    store = store_path("xc10", frame_grid)
    extract(xc10 / "train_audio", store, "train", xc10 / "train_metadata.csv", frame_grid)
    species = species_from_metadata(xc10 / "train_metadata.csv")
    hidden = set(species[1::3])  # 3 of the 10 species hidden from the surrogate
    with open(xc10 / "train_metadata.csv", newline="", encoding="utf-8") as handle:
        names = {row["primary_label"]: row["scientific_name"].strip().lower() for row in csv.DictReader(handle)}
    (work / "species.txt").write_text("\n".join(species) + "\n")
    taxonomy = hiding_taxonomy(xc10 / "eBird_Taxonomy_v2021.csv", {names[s] for s in hidden}, work / "taxonomy.csv")

    def truth_of(rows):
        return folder_matrices(rows["species"].to_list(), species)[0].astype(np.float32)

    return evaluate_corpus("xc10 (100 xeno-canto clips, 10 species; truth: folder species)", xc10 / "train_audio",
                           store, "train", species, truth_of, {"scheme": "species"}, taxonomy, hidden, work)


def piha_corpus(work: Path, quick: bool, hide: bool, frame_grid: str = "cover") -> dict | None:
    piha = SHARED / "piha"
    xc10 = SHARED / "xc10"
    if not (piha / "annotations.csv").is_file() or not (xc10 / "eBird_Taxonomy_v2021.csv").is_file():
        return None
    from birdemb.labels.annotations import events_to_windows, read_annotations

    store = store_path("piha", frame_grid)
    extract(piha / "audio", store, "piha", frame_grid=frame_grid)
    species = ["scrpih1"]
    (work / "species.txt").write_text("scrpih1\n")
    hidden = {"scrpih1"} if hide else set()
    taxonomy = hiding_taxonomy(xc10 / "eBird_Taxonomy_v2021.csv", {"lipaugus vociferans"} if hide else set(),
                               work / "taxonomy.csv")
    events = read_annotations(piha / "annotations.csv")

    def truth_of(rows):
        labels, _ = events_to_windows(events, rows["file"].to_list(), rows["start_s"].to_numpy(),
                                      rows["end_s"].to_numpy(), species)
        return labels

    what = "hidden from the surrogate" if hide else "known to BirdNET"
    return evaluate_corpus(f"piha (11 recordings, Screaming Piha {what}; truth: 254 annotated calls)",
                           piha / "audio", store, "piha", species, truth_of,
                           {"scheme": "annotations", "annotations": str(piha / "annotations.csv")},
                           taxonomy, hidden, work)


# ---------------------------------------------------------------- the section


def cell(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown(result: dict) -> list[str]:
    lines = [f"### {result['corpus']}", "",
             f"{result['windows']} windows of {result['files']} files, {FOLDS}-fold by file. Known species: "
             f"{', '.join(result['known']) or 'none'}; hidden from the surrogate: {', '.join(result['hidden']) or 'none'}.",
             "", "| scorer | macro ROC-AUC, known species | macro ROC-AUC, hidden species | training s (all folds) |",
             "|---|---:|---:|---:|"]
    for name, row in result["table"].items():
        seconds = "" if row["train_s"] is None else f"{row['train_s']:.1f}"
        lines.append(f"| {name} | {cell(row['known'])} | {cell(row['hidden'])} | {seconds} |")
    table = result["table"]
    default, passthrough = table["default head (`--init auto`)"], table["passthrough (BirdNET's own predictions)"]
    reference = table["logistic regression (sklearn)"]
    checks = []
    if default["known"] is not None and passthrough["known"] is not None:
        ok = default["known"] >= passthrough["known"]
        checks.append(f"default head {'at or above' if ok else 'BELOW'} passthrough on known species "
                      f"({default['known']:.3f} vs {passthrough['known']:.3f})")
    if default["hidden"] is not None and reference["hidden"] is not None:
        ok = default["hidden"] >= reference["hidden"] - 0.01
        checks.append(f"{'within' if ok else 'NOT within'} 0.01 of the logistic regression on hidden species "
                      f"({default['hidden']:.3f} vs {reference['hidden']:.3f})")
    blend = table.get(BLEND_NAME)
    if blend and blend["known"] is not None and default["known"] is not None and passthrough["known"] is not None:
        checks.append(f"blend (W = {BLEND:g}) on known species {blend['known']:.3f} against the default head's "
                      f"{default['known']:.3f} and passthrough's {passthrough['known']:.3f}")
    lines += ["", "Targets: " + "; ".join(checks) + "." if checks else "", ""]
    return lines


def run(quick: bool = False) -> str:
    if OUT.exists():
        for child in OUT.glob("work-*"):
            shutil.rmtree(child)
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = []
    for name, make in (("xc10", lambda w: xc10_corpus(w, quick)), ("piha-known", lambda w: piha_corpus(w, quick, False)),
                       ("piha-hidden", lambda w: piha_corpus(w, quick, True))):
        work = OUT / f"work-{name}"
        work.mkdir(parents=True)
        result = make(work)
        if result is not None:
            results.append(result)
            (OUT / f"{name}.json").write_text(json.dumps(result, indent=1))
    lines = ["## quality: heads against ground truth on real recordings", "", __doc__.split("\n\n", 1)[1].strip(), ""]
    if not results:
        lines.append("No labelled real corpus found under ../shared/data (xc10, piha): nothing measured.")
    for result in results:
        lines += markdown(result)
    lines.append(f"Section time {time.perf_counter() - started:.0f} s.")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
