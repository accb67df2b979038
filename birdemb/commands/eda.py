"""birdemb eda: pseudo-label statistics of a feature store, as tables, figures and an index page."""
from __future__ import annotations

from birdemb.errors import UsageError
from birdemb.explore.report import EdaOptions, run_eda
from birdemb.labels.species import read_species_list, read_taxonomy


def register(subparsers) -> None:
    defaults = EdaOptions()
    p = subparsers.add_parser("eda", help="call rates, species frequencies, FPGrowth itemsets and rules from pseudo-labels")
    p.add_argument("--store", required=True, help="feature store folder")
    p.add_argument("--surrogate", required=True, help="model whose logits give the pseudo-labels, e.g. birdnet")
    p.add_argument("--out", required=True, help="folder for the PNGs, CSVs, Markdown tables and index.md")
    p.add_argument("--threshold", type=float, default=defaults.threshold,
                   help=f"pseudo-label when sigmoid(logit) > this (default {defaults.threshold})")
    p.add_argument("--min-support", type=float, default=defaults.min_support,
                   help=f"FPGrowth minimum support, share of recordings (default {defaults.min_support})")
    p.add_argument("--min-confidence", type=float, default=defaults.min_confidence,
                   help=f"association-rule minimum confidence (default {defaults.min_confidence})")
    p.add_argument("--max-len", type=int, default=defaults.max_len,
                   help=f"largest itemset mined (default {defaults.max_len}; 0 for no limit)")
    p.add_argument("--taxonomy", help="eBird_Taxonomy_v2021.csv: names BirdNET species by eBird code "
                                      "(without it, by BirdNET common name)")
    p.add_argument("--species-list", help="restrict to these species (text, JSON or sample_submission.csv)")
    p.set_defaults(func=run)


def run(args) -> int:
    if not 0 < args.threshold < 1:
        raise UsageError("--threshold must be strictly between 0 and 1")
    if not 0 < args.min_support <= 1 or not 0 < args.min_confidence <= 1:
        raise UsageError("--min-support and --min-confidence must be in (0, 1]")
    options = EdaOptions(threshold=args.threshold, min_support=args.min_support,
                         min_confidence=args.min_confidence, max_len=args.max_len or None)
    taxonomy = read_taxonomy(args.taxonomy) if args.taxonomy else None
    species_list = read_species_list(args.species_list) if args.species_list else None
    report = run_eda(args.store, args.surrogate, args.out, taxonomy, species_list, options)
    for row in report.tables["call_rates"].iter_rows(named=True):
        print(f"{row['dataset']} ({row['kind']}): {row['windows_with_call']} of {row['windows']} windows "
              f"with a call ({row['call_rate']:.1%}), {row['files']} recordings")
    for row in report.tables["kl_divergence"].iter_rows(named=True):
        print(f"KL({row['p']} || {row['q']}) = {row['kl_nats']:.3f} nats over {row['species']} species")
    print(f"{len(report.tables)} tables and {len(report.figures)} figures -> {report.index}")
    return 0
