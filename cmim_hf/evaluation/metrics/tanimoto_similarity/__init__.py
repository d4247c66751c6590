"""ECFP4 Tanimoto similarity to the inputs as a local ``evaluate`` metric (see ``tanimoto_similarity.py``)."""
