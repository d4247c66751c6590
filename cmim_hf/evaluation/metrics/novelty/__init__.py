"""Novelty of generated SMILES against a reference set as a local ``evaluate`` metric (see ``novelty.py``)."""
