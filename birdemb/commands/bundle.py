"""birdemb bundle: a trained run as a self-contained submission bundle."""
from __future__ import annotations

import json

from birdemb.deploy.bundle import build_bundle
from birdemb.runtime.bundle_format import BUNDLE_MANIFEST


def register(subparsers) -> None:
    p = subparsers.add_parser("bundle", help="gather a run's backbone .tflite, head, species and layout for submission")
    p.add_argument("--run", required=True, help="run directory from train-head")
    p.add_argument("--out", required=True, help="bundle folder to create")
    p.add_argument("--weights", help="the backbone weights the run was trained on, if not the default ones")
    fused = p.add_mutually_exclusive_group()
    fused.add_argument("--fused", dest="fused", action="store_true", default=None,
                       help="insist on the one-graph .tflite (default: whenever the backbone allows it)")
    fused.add_argument("--no-fused", dest="fused", action="store_false", help="skip the one-graph .tflite")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")
    p.set_defaults(func=run)


def run(args) -> int:
    out = build_bundle(args.run, args.out, weights=args.weights, fused=args.fused, overwrite=args.overwrite)
    manifest = json.loads((out / BUNDLE_MANIFEST).read_text())
    size = sum((out / name).stat().st_size for name in manifest["files"]) / 1e6
    check = manifest["fused_check"]
    fused = f", fused graph agrees to {check['max_abs_difference']:.1e}" if check else ""
    print(f"bundle {out}: {manifest['backbone']['model']} + head {manifest['head_layers']}, "
          f"{manifest['n_species']} species, {len(manifest['files'])} files, {size:.1f} MB{fused}")
    return 0
