"""cMIM: the configuration, model, tokenizer, pooling, pipelines and SMILES normalization that a
checkpoint folder carries as its remote code (their imports stay relative and within this folder, so
that Transformers' ``custom_object_save`` copies exactly these files)."""
