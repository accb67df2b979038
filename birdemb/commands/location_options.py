"""The location filter's options, one group for every command that filters by place and week
(detect, submit): BirdNET's location-and-week model keeps the species expected there."""
from __future__ import annotations

from birdemb.backbones.birdnet_location import DEFAULT_THRESHOLD


def add_location_arguments(parser, title: str, week_default: int | None = None) -> None:
    place = parser.add_argument_group(title)
    place.add_argument("--lat", type=float, help="latitude of every recording (with --lon)")
    place.add_argument("--lon", type=float, help="longitude of every recording (with --lat)")
    place.add_argument("--week", type=int, default=week_default,
                       help="BirdNET week 1-48 (four per month); -1: the whole year (default)")
    place.add_argument("--location-metadata", metavar="CSV",
                       help="per-file places: filename (or file), latitude, longitude [, week or date YYYY-MM-DD]; "
                            "files it lacks use --lat/--lon, else are not filtered")
    place.add_argument("--location-threshold", type=float, default=DEFAULT_THRESHOLD,
                       help=f"least location probability to keep a species (default {DEFAULT_THRESHOLD})")
    place.add_argument("--birds-only", action="store_true", help="also drop labels that are not birds (needs --taxonomy)")
