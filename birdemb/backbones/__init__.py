from birdemb.backbones.base import (
    Backbone,
    BackboneError,
    CliOption,
    backbone_class,
    backbone_names,
    load_backbone,
    load_described,
    registered_classes,
)

__all__ = ["Backbone", "BackboneError", "CliOption", "backbone_class", "backbone_names", "load_backbone",
           "load_described", "registered_classes"]
