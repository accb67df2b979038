"""birdemb search: the stored windows nearest to an example (a stored window or any recording)."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("search", help="find the stored windows most like an example window")
    p.add_argument("--store", required=True, help="feature store folder")
    p.add_argument("--model", required=True, help="the model partition to search (e.g. birdnet)")
    p.add_argument("--query", required=True, metavar="FILE[@START_S]",
                   help="a stored file (as the store names it) or any recording, and the second its window holds")
    p.add_argument("--k", type=int, default=10, help="neighbours to return (default 10)")
    p.add_argument("--audio", help="the audio folder the store was extracted from (default: the folders the store "
                   "recorded when it was extracted)")
    p.add_argument("--clips", metavar="DIR", help="write each neighbour's window as a clip here")
    p.add_argument("--clip-format", default="wav", choices=("wav", "flac"))
    p.add_argument("--raven", metavar="FILE", help="write the neighbours as a Raven selection table")
    p.add_argument("--weights", help="the backbone's weights, for a recording the store's model must embed")
    p.set_defaults(func=run)


def run(args) -> int:
    from birdemb.explore import search, search_output
    from birdemb.explore.index import refresh_index

    info = refresh_index(args.store, args.model)  # built when missing, extended when behind the store
    if info.action != "unchanged":
        print(info.line())
    found = search.search(args.store, args.model, args.query, args.k, audio=args.audio, weights=args.weights)
    print(search_output.table(found))
    if args.clips:
        written = search_output.write_clips(found, args.audio, args.clips, args.clip_format, args.store, args.model)
        print(f"{len(written)} clips -> {args.clips}")
    if args.raven:
        print(f"Raven table -> {search_output.write_raven(found, args.raven, args.audio)}")
    return 0
