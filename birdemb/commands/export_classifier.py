"""birdemb export-classifier: a run on BirdNET embeddings as a BirdNET-Analyzer / BirdNET-Pi classifier."""
from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export-classifier",
        help="write a run's head with BirdNET as one .tflite + _Labels.txt (BirdNET-Analyzer --classifier)")
    p.add_argument("--run", required=True, help="run directory from train-head (on BirdNET embeddings)")
    p.add_argument("--out", required=True, metavar="FILE.tflite",
                   help="the classifier to write; FILE_Labels.txt and FILE_birdemb.json go beside it")
    p.add_argument("--taxonomy", metavar="CSV",
                   help="eBird_Taxonomy_v2021.csv, to name eBird codes as Scientific name_Common name "
                        "(default: the one the run was trained with, if it is still there)")
    p.add_argument("--weights", help="the BirdNET weights the run was trained on, if not the default ones")
    p.set_defaults(func=run)


def run(args) -> int:
    from birdemb.deploy.birdnet_classifier import CHECK_SUFFIX, LABELS_SUFFIX, export_classifier, sidecar

    out = export_classifier(args.run, args.out, taxonomy=args.taxonomy, weights=args.weights)
    record = json.loads(sidecar(out, CHECK_SUFFIX).read_text())
    print(f"classifier {out} ({out.stat().st_size / 1e6:.1f} MB): BirdNET {record['backbone']['version']} + head "
          f"{record['head_layers']}, {len(record['labels'])} species in {sidecar(out, LABELS_SUFFIX).name}; "
          f"agrees with birdemb to {record['check']['max_abs_probability_difference']:.1e} on "
          f"{record['check']['frames']} frames")
    return 0
