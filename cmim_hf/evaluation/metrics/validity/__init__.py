"""Validity of generated SMILES as a local ``evaluate`` metric (see ``validity.py``)."""
