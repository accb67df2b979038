"""Labels: species lists and taxonomy (species), the mapping of a model's labels onto a
species list (mapping), and the label schemes built from surrogate logits (schemes). Pure
numpy and the standard library, shared by backbones, training and exploration."""
