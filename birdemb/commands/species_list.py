"""birdemb species-list: the species BirdNET expects at a place and week (its location model)."""
from __future__ import annotations

from pathlib import Path

from birdemb.backbones.birdnet_location import DEFAULT_THRESHOLD, ExpectedSpecies, check_place, species_for_place
from birdemb.labels.species import label_codes, read_taxonomy


def register(subparsers) -> None:
    p = subparsers.add_parser("species-list", help="species expected at a place and week (BirdNET's location model)")
    p.add_argument("--lat", type=float, required=True, help="latitude, -90 to 90")
    p.add_argument("--lon", type=float, required=True, help="longitude, -180 to 180")
    p.add_argument("--week", type=int, required=True,
                   help="BirdNET week 1-48 (four per month), or -1 for the whole year")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"least location probability to list a species (default {DEFAULT_THRESHOLD})")
    p.add_argument("--taxonomy", metavar="CSV", help="eBird_Taxonomy_v2021.csv: add each species' eBird code(s)")
    p.add_argument("--out", metavar="FILE", help="write the list here instead of printing it")
    p.set_defaults(func=run)


def species_lines(species: list[ExpectedSpecies], taxonomy: dict | None = None) -> list[str]:
    """scientific<TAB>common<TAB>probability[<TAB>eBird codes, comma-separated], one per species."""
    codes = label_codes([s.label for s in species], taxonomy) if taxonomy is not None else None
    lines = []
    for i, s in enumerate(species):
        fields = [s.scientific_name, s.common_name, f"{s.probability:.6f}"]
        if codes is not None:
            fields.append(",".join(codes[i]))
        lines.append("\t".join(fields))
    return lines


def run(args) -> int:
    check_place(args.lat, args.lon, args.week, args.threshold)  # before loading anything
    taxonomy = read_taxonomy(args.taxonomy) if args.taxonomy else None
    lines = species_lines(species_for_place(args.lat, args.lon, args.week, args.threshold), taxonomy)
    if args.out:
        Path(args.out).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    else:
        for line in lines:
            print(line)
    return 0
