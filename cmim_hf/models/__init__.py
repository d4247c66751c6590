"""Model definitions, one folder per architecture."""
