"""birdemb bundle: a trained run, or the surrogate's own predictions (passthrough), as a
self-contained submission bundle."""
from __future__ import annotations

import json

from birdemb.errors import UsageError
from birdemb.runtime.bundle_format import BUNDLE_MANIFEST


def register(subparsers) -> None:
    p = subparsers.add_parser("bundle", help="gather a run's backbone .tflite, head, species and layout for submission")
    p.add_argument("--run", help="run directory from train-head")
    p.add_argument("--passthrough", action="store_true",
                   help="no run: the backbone's own probabilities for --species (the paper's baseline)")
    p.add_argument("--model", default="birdnet", help="with --passthrough: the backbone (default birdnet)")
    p.add_argument("--species", metavar="FILE",
                   help="with --passthrough: sample_submission.csv, train_metadata.csv, or a species list")
    p.add_argument("--taxonomy", metavar="CSV",
                   help="eBird_Taxonomy_v2021.csv mapping BirdNET's scientific names to eBird codes (default: the "
                        "run's own, or the file beside --species)")
    p.add_argument("--out", required=True, help="bundle folder to create")
    p.add_argument("--weights", help="the backbone weights the run was trained on, if not the default ones")
    fused = p.add_mutually_exclusive_group()
    fused.add_argument("--fused", dest="fused", action="store_true", default=None,
                       help="insist on the one-graph .tflite (default: whenever the backbone allows it)")
    fused.add_argument("--no-fused", dest="fused", action="store_false", help="skip the one-graph .tflite")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")
    p.set_defaults(func=run)


def run(args) -> int:
    if bool(args.run) == bool(args.passthrough):
        raise UsageError("give --run RUN_DIR, or --passthrough --species FILE")
    if args.passthrough:
        from birdemb.deploy.passthrough import build_passthrough_bundle

        if not args.species:
            raise UsageError("--passthrough needs --species FILE")
        out, report = build_passthrough_bundle(args.model, args.species, args.out, taxonomy=args.taxonomy,
                                               weights=args.weights, fused=args.fused, overwrite=args.overwrite)
        print(f"passthrough: {report}")
    else:
        from birdemb.deploy.bundle import build_bundle

        out = build_bundle(args.run, args.out, weights=args.weights, fused=args.fused, overwrite=args.overwrite,
                           taxonomy=args.taxonomy)
    manifest = json.loads((out / BUNDLE_MANIFEST).read_text())
    size = sum((out / name).stat().st_size for name in manifest["files"]) / 1e6
    check = manifest["fused_check"]
    fused = f", fused graph agrees to {check['max_abs_difference']:.1e}" if check else ""
    passthrough = manifest["passthrough"]
    blend = (f", passthrough columns for {passthrough['matched']} species" if "columns" in passthrough
             else f", no passthrough columns ({passthrough['missing']})")
    print(f"bundle {out}: {manifest['backbone']['model']} + head {manifest['head_layers']}, "
          f"{manifest['n_species']} species, {len(manifest['files'])} files, {size:.1f} MB{fused}{blend}")
    return 0
