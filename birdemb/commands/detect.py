"""birdemb detect: detections in BirdNET-Analyzer's tables (Raven, Audacity, CSV, Kaleidoscope)
and Parquet, from a backbone's own classifier, a trained run or bundle, or a feature store."""
from __future__ import annotations

from pathlib import Path

from birdemb.backbones import backbone_names, load_backbone
from birdemb.commands.location_options import add_location_arguments
from birdemb.deploy.bundle import read_run, run_taxonomy_file
from birdemb.deploy.detect import DEFAULT_MIN_CONF, DetectOptions, detect
from birdemb.deploy.detect_sources import BackbonePassthrough, BundleHead, StoreSource
from birdemb.deploy.detection_formats import FORMATS
from birdemb.deploy.submit import open_bundle
from birdemb.errors import UsageError
from birdemb.extract.discovery import discover


def register(subparsers) -> None:
    p = subparsers.add_parser("detect", help="detections as Raven/Audacity/CSV/Kaleidoscope/Parquet tables")
    what = p.add_argument_group("what scores the windows (one of)")
    what.add_argument("--model", choices=backbone_names(),
                      help="a backbone's own classifier (birdnet: BirdNET-Analyzer's detections)")
    what.add_argument("--run", metavar="RUN_DIR", help="a trained head (birdemb train-head)")
    what.add_argument("--bundle", metavar="DIR", help="a bundle (birdemb bundle)")
    where = p.add_argument_group("which recordings (one of)")
    where.add_argument("--audio", metavar="DIR", help="a folder of recordings (any depth, any common format)")
    where.add_argument("--store", metavar="DIR", help="a feature store: its stored rows, no decoding "
                       "(with --model: stored logits; with --run/--bundle: embeddings through the head)")
    p.add_argument("--dataset", help="with --store: one dataset (default: all of the model's)")
    p.add_argument("--out", required=True, metavar="DIR", help="where the tables go (mirrors the audio tree)")
    p.add_argument("--format", default="raven", metavar="F[,F]",
                   help=f"one or more of {', '.join(FORMATS)}, or all (default raven)")
    p.add_argument("--min-conf", type=float, default=DEFAULT_MIN_CONF,
                   help=f"least confidence of a detection (default {DEFAULT_MIN_CONF}, as BirdNET-Analyzer)")
    p.add_argument("--overlap", type=float, default=0.0, metavar="S",
                   help="seconds each window overlaps the one before (audio only; default 0)")
    p.add_argument("--sensitivity", type=float, default=1.0,
                   help="BirdNET-Analyzer's sensitivity 0.5-1.5 for a backbone's own logits: each logit is "
                   "shifted by (sensitivity - 1) x 10 (default 1.0)")
    p.add_argument("--top-n", type=int, help="the N most likely species per window, whatever their confidence "
                   "(as BirdNET-Analyzer: --min-conf does not apply)")
    p.add_argument("--merge-consecutive", type=int, default=1, metavar="N",
                   help="join up to N adjacent detections of a species into one (default 1: off; 0: no limit)")
    p.add_argument("--species-list", metavar="FILE", help="keep only these species (BirdNET labels, scientific "
                   "names or species codes, one per line)")
    p.add_argument("--taxonomy", metavar="CSV", help="eBird_Taxonomy_v2021.csv: names for eBird codes, codes for "
                   "BirdNET labels, and the location filter for eBird codes")
    add_location_arguments(p, "location filter (BirdNET's location-and-week model)")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def options_from_args(args) -> DetectOptions:
    return DetectOptions(
        formats=args.format, min_conf=args.min_conf, overlap=args.overlap, sensitivity=args.sensitivity,
        top_n=args.top_n, merge_consecutive=args.merge_consecutive, species_list=args.species_list,
        taxonomy=args.taxonomy, lat=args.lat, lon=args.lon, week=args.week,
        location_metadata=args.location_metadata, location_threshold=args.location_threshold,
        birds_only=args.birds_only, progress=not args.no_progress,
    )


def source_from_args(args):
    """(source, recordings(skip), audio root for the tables, total recordings)."""
    heads = [name for name in ("run", "bundle") if getattr(args, name)]
    if len(heads) > 1 or (args.audio is None) == (args.store is None):
        raise UsageError("give one of `audio` or `store`, and at most one of `run` or `bundle`")
    if args.audio is not None:
        if bool(args.model) == bool(heads):
            raise UsageError("with `audio`, give either `model` (its own classifier) or `run`/`bundle` (a head)")
        if args.model:
            source = BackbonePassthrough(load_backbone(args.model, threads=args.threads), args.overlap,
                                         args.sensitivity)
        else:
            path = args.run or args.bundle
            bundle = open_bundle(path)
            source = BundleHead(bundle, args.overlap, args.threads, {"head": str(Path(path).resolve())})
        problems: list = []
        files = [item.file for item in discover(args.audio, problems=problems)]
        for problem in problems:
            print(f"birdemb detect: skipped: {problem}")

        def recordings(skip):
            return source.recordings(args.audio, [f for f in files if f not in skip])

        return source, recordings, str(Path(args.audio).resolve()), len(files)
    if args.overlap:
        raise UsageError("`overlap` applies to audio; a store's windows are the ones it was extracted with "
                         "(birdemb extract --overlap)")
    if heads:
        path = args.run or args.bundle
        bundle = open_bundle(path)
        model = args.model or bundle.model
        if bundle.model and model != bundle.model:
            raise UsageError(f"{path}: the head takes {bundle.model} embeddings, not {model}'s")
        source = StoreSource(args.store, model, args.dataset, bundle.head_file,
                             head_describe={"head": str(Path(path).resolve())}, species=list(bundle.species))
    else:
        if not args.model:
            raise UsageError("with `store`, give `model` (its stored logits) or `run`/`bundle` (a head)")
        source = StoreSource(args.store, args.model, args.dataset, sensitivity=args.sensitivity)
    return source, source.recordings, "", len(source.names())


def run(args) -> int:
    options = options_from_args(args)
    if args.run and not args.taxonomy:  # the taxonomy the run was trained with names its eBird codes
        found = run_taxonomy_file(read_run(args.run)[0])
        options.taxonomy = str(found) if found else None
    options.check()
    source, recordings, audio_root, total = source_from_args(args)
    summary = detect(source, args.out, options, recordings, audio_root=audio_root, total=total)
    for line in summary.lines():
        print(line)
    return 1 if summary.failed else 0
