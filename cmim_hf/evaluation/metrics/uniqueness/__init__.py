"""Uniqueness of generated SMILES as a local ``evaluate`` metric (see ``uniqueness.py``)."""
