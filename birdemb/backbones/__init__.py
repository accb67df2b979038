from birdemb.backbones.base import Backbone, BackboneError, backbone_names, load_backbone

__all__ = ["Backbone", "BackboneError", "backbone_names", "load_backbone"]
