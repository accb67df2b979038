"""birdemb: bird-call classification by transfer learning on pretrained audio embeddings."""

__version__ = "0.1.0"
