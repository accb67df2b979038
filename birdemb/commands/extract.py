"""birdemb extract: embeddings and logits of every window into the feature store."""
from __future__ import annotations

from birdemb.backbones import backbone_names
from birdemb.extract import ExtractConfig, extract


def register(subparsers) -> None:
    p = subparsers.add_parser("extract", help="run a backbone over audio files into the feature store")
    p.add_argument("--model", required=True, choices=backbone_names())
    p.add_argument("--audio", required=True, help="train_audio/ tree (species = folder) or a folder of soundscapes")
    p.add_argument("--store", required=True, help="feature store folder, or a URI such as s3://bucket/store")
    p.add_argument("--dataset", required=True, help="name of this set of files in the store, e.g. train")
    p.add_argument("--metadata", help="train_metadata.csv: primary and secondary labels by filename")
    p.add_argument("--window-s", type=float, default=5.0, help="window length in seconds (default 5)")
    p.add_argument("--min-audio-s", type=float, default=1.0,
                   help="drop a last window with less real audio than this (default 1 s)")
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: one per core)")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads per worker (default 1)")
    p.add_argument("--batch", type=int, default=16, help="frames per model call (default 16)")
    p.add_argument("--weights", help="model weights (file, folder or hub handle; see the user guide)")
    p.add_argument("--files-per-part", type=int, default=64,
                   help="files per Parquet part; finished parts survive a killed job (default 64)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: a process pool on this machine (default); ray: the workers of a Ray cluster")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="Ray cluster to join (e.g. auto or ray://head:10001; default RAY_ADDRESS or a local Ray)")
    p.add_argument("--bandwidth", type=float, choices=[1.5, 3.0],
                   help="encodec: codec bandwidth in kbps, 1.5 (2 codebooks, default) or 3 (4 codebooks)")
    p.add_argument("--encodec-output", choices=["codes", "latent"],
                   help="encodec: store the window's codes (default) or its mean encoder output (128-d)")
    p.add_argument("--species-list", metavar="PATH",
                   help="vocalization: store logits in this species list's order (-inf for species "
                        "the model lacks); a text file of codes, a JSON list or a sample_submission.csv")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def model_options(args) -> dict:
    """Backbone-specific settings given on the command line (each backbone ignores the rest).
    Only options the user gave are passed, so each backbone keeps its own defaults."""
    given = {
        "bandwidth": getattr(args, "bandwidth", None),
        "output": getattr(args, "encodec_output", None),
        "species": getattr(args, "species_list", None),
    }
    return {key: value for key, value in given.items() if value is not None}


def run(args) -> int:
    options = model_options(args)
    config = ExtractConfig(
        audio=args.audio, store=args.store, model=args.model, dataset=args.dataset,
        metadata=args.metadata, window_s=args.window_s, min_audio_s=args.min_audio_s,
        workers=args.workers, threads=args.threads, batch=args.batch, weights=args.weights,
        model_options=options, flush_files=args.files_per_part, progress=not args.quiet,
        engine=args.engine, engine_options={"address": args.ray_address} if args.ray_address else {},
    )
    summary = extract(config)
    print(summary.line())
    for file, error in list(summary.failures.items())[:10]:
        print(f"  failed: {error}")
    if len(summary.failures) > 10:
        print(f"  ... and {len(summary.failures) - 10} more (see _failures.jsonl in the partition)")
    return 0
