"""birdemb extract: embeddings and logits of every window into the feature store."""
from __future__ import annotations

import sys

from birdemb import store
from birdemb.backbones import backbone_class, backbone_names, registered_classes
from birdemb.extract.job import ExtractConfig, extract
from birdemb.runtime.audio import FRAME_GRIDS
from birdemb.runtime.lifecycle import interruptible, interruption


def register(subparsers) -> None:
    p = subparsers.add_parser("extract", help="run a backbone over audio files into the feature store")
    p.add_argument("--model", required=True, metavar="MODEL",
                   help=f"{', '.join(backbone_names())}, or a backbone class outside birdemb as package.module:Class")
    p.add_argument("--audio", required=True, help="train_audio/ tree (species = folder) or a folder of soundscapes")
    p.add_argument("--store", required=True, help="feature store folder, or a URI such as s3://bucket/store")
    p.add_argument("--dataset", required=True, help="name of this set of files in the store, e.g. train")
    p.add_argument("--metadata", help="train_metadata.csv: primary and secondary labels by filename")
    p.add_argument("--window-s", type=float, default=5.0, help="window length in seconds (default 5)")
    p.add_argument("--frame-grid", choices=FRAME_GRIDS, default="cover",
                   help="which model frames a window pools: frames that cover it (default; BirdNET: 2 per 5 s), "
                   "or one frame at its centre (half BirdNET's cost per 5 s window)")
    p.add_argument("--overlap", type=float, default=0.0, metavar="S",
                   help="seconds each window overlaps the one before (default 0; windows start every window-s - S)")
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
    add_backbone_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def add_backbone_arguments(p) -> None:
    """Each registered backbone's own options (a flag two backbones share is added once)."""
    added = set()
    for cls in registered_classes():
        for option in cls.cli_options:
            if option.flag in added:
                continue
            added.add(option.flag)
            extra = {"choices": list(option.choices)} if option.choices else {}
            p.add_argument(option.flag, dest=option.dest, type=option.type, metavar=option.metavar,
                           help=option.help, **extra)


def run(args) -> int:
    options = backbone_class(args.model).options_from_args(args)
    config = ExtractConfig(
        audio=args.audio, store=args.store, model=args.model, dataset=args.dataset,
        metadata=args.metadata, window_s=args.window_s, min_audio_s=args.min_audio_s, overlap_s=args.overlap, frame_grid=args.frame_grid,
        workers=args.workers, threads=args.threads, batch=args.batch, weights=args.weights,
        model_options=options, flush_files=args.files_per_part, progress=not args.quiet,
        engine=args.engine, engine_options={"address": args.ray_address} if args.ray_address else {},
    )
    try:
        with interruptible():
            summary = extract(config)
    except KeyboardInterrupt as interrupt:
        return report_interrupt(interrupt, config)
    print(summary.line())
    for file, error in list(summary.failures.items())[:10]:
        print(f"  failed: {error}")
    if len(summary.failures) > 10:
        print(f"  ... and {len(summary.failures) - 10} more (see _failures.jsonl in the partition)")
    for problem in summary.unreadable:
        print(f"birdemb extract: warning: {problem}", file=sys.stderr)
    if summary.unreadable:
        print(f"  {len(summary.unreadable)} folders or files could not be read and were left out (warnings on stderr)")
    return 0


def report_interrupt(interrupt: KeyboardInterrupt, config: ExtractConfig) -> int:
    """One line on stderr; the exit status says which signal (130 Ctrl-C, 143 SIGTERM)."""
    reason, status = interruption(interrupt)
    stored = stored_count(config)
    count = "" if stored is None else f"{stored} files stored, "
    print(f"birdemb extract: interrupted by {reason}: {count}rerun the same command to resume", file=sys.stderr)
    return status


def stored_count(config: ExtractConfig) -> int | None:
    """Files with rows in the job's partition now, or None when that cannot be told."""
    name = getattr(backbone_class(config.model), "name", None)
    if not isinstance(name, str):
        return None  # a backbone that names itself only once built
    try:
        return len(store.stored_files(store.partition_dir(config.store, name, config.dataset)))
    except Exception:  # a courtesy count: never let it hide the interruption
        return None
