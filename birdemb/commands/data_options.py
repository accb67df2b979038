"""Options that pick the windows, species, split and labels: shared by train-head, evaluate,
labels and sweep, each building the same DataOptions and LabelOptions from them."""
from __future__ import annotations

import contextlib
import sys
import warnings

from birdemb.labels.mapping import CALL_RULES
from birdemb.labels.schemes import SCHEMES
from birdemb.training.config import BAD_WINDOWS, DataOptions, LabelOptions


def add_data_arguments(p, required: bool = True, labels: bool = True, split: bool = True) -> None:
    p.add_argument("--store", required=required, help="feature store folder")
    p.add_argument("--embeddings", required=required, help="model whose embeddings feed the head, e.g. birdnet")
    p.add_argument("--surrogate", required=required, help="model whose logits make the labels, e.g. birdnet")
    if labels:
        p.add_argument("--labels", required=required, choices=list(SCHEMES),
                       help="species: pseudo OR folder species on windows with a call; pseudo: sigmoid(logit) > "
                            "threshold; folder: the folder species on every window; annotations: the events of "
                            "--annotations on the annotated files only")
    p.add_argument("--dataset", action="append", dest="datasets",
                   help="dataset(s) of the store to use (repeat or comma list; default: all)")
    p.add_argument("--metadata", help="train_metadata.csv: the species list from its primary labels")
    p.add_argument("--taxonomy", help="eBird_Taxonomy_v2021.csv (BirdNET labels -> eBird codes; "
                                      "default: beside --metadata)")
    p.add_argument("--species-list", help="species list file (text, JSON, or sample_submission.csv)")
    p.add_argument("--on-bad-windows", dest="bad_windows", choices=list(BAD_WINDOWS), default="skip",
                   help="stored windows whose embedding or logits hold NaN or infinite values: skip (leave them "
                        "out with a warning naming them; default) or error")
    if labels:
        p.add_argument("--threshold", type=float, default=0.5, help="pseudo-label probability threshold (0.5)")
        p.add_argument("--secondary", action="store_true", help="also label the metadata's secondary species")
        p.add_argument("--call-rule", choices=list(CALL_RULES), default="list",
                       help="a window has a call when a species of the list is a surrogate positive (list, the "
                            "paper's equation 2; default) or any bird label of the surrogate is (any-bird)")
        p.add_argument("--annotations", metavar="PATH",
                       help="strong labels (plain CSV file,start_s,end_s,label; Raven selection tables; Audacity "
                            "labels; BirdNET-Analyzer results; a file or a folder of them): the ground truth "
                            "for selection and evaluation, and the labels with --labels annotations")
    if split:
        p.add_argument("--val-fraction", type=float, default=0.2, help="files held out for validation (0.2)")
        p.add_argument("--folds", type=int, default=0, help="k-fold by file instead of one split")
        p.add_argument("--seed", type=int, default=0)


def split_datasets(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [name for value in values for name in value.split(",") if name]


def data_options(args, embeddings: str | None = None) -> DataOptions:
    return DataOptions(
        store=args.store, embeddings=embeddings or args.embeddings, surrogate=args.surrogate,
        datasets=split_datasets(args.datasets), metadata=args.metadata, taxonomy=args.taxonomy,
        species_list=args.species_list, bad_windows=args.bad_windows,
        **{name: getattr(args, name) for name in ("val_fraction", "folds", "seed") if hasattr(args, name)},
    )


def label_options(args) -> LabelOptions:
    return LabelOptions(scheme=args.labels, threshold=args.threshold, secondary=args.secondary,
                        call_rule=args.call_rule, annotations=args.annotations)


@contextlib.contextmanager
def warnings_as_lines():
    """BadWindowsWarning as one `warning: ...` line on stderr each (not Python's file:line
    form); other warnings are shown as usual."""
    from birdemb.training.windows import BadWindowsWarning  # torch and polars: only when a command runs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BadWindowsWarning)
        try:
            yield
        finally:
            for warning in caught:
                if issubclass(warning.category, BadWindowsWarning):
                    print(f"warning: {warning.message}", file=sys.stderr)
                else:
                    warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
