"""Deployment: bundles built from run directories (with a fused graph where the backbone
offers one), the generated single-file Kaggle script, and `submit` over runs or bundles."""
