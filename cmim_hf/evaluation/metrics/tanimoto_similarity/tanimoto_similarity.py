"""ECFP4 Tanimoto similarity of generated molecules to their inputs, as a local ``evaluate`` metric.

Load with ``evaluate.load("<path to this folder>")`` (no Hub access needed) or instantiate
``TanimotoSimilarity()`` directly.
"""

import datasets
import evaluate
import numpy as np

from cmim_hf.chem import parse_smiles
from cmim_hf.generation.metrics import tanimoto_similarity

_DESCRIPTION = (
    "Mean Tanimoto similarity of ECFP4 (Morgan radius 2, 2048 bits) fingerprints between each generated "
    "molecule and its input. `tanimoto_similarity` counts an invalid prediction as 0; "
    "`tanimoto_similarity_valid` averages over valid predictions only (0.0 when none is valid)."
)
_CITATION = "Rogers and Hahn, Extended-Connectivity Fingerprints, J. Chem. Inf. Model. 50, 2010."
_KWARGS_DESCRIPTION = """
Args:
    predictions: generated SMILES strings (may be invalid).
    references: the input SMILES, one per prediction (every entry must be valid).
Returns:
    {"tanimoto_similarity": float in [0, 1], "tanimoto_similarity_valid": float in [0, 1]}
Raises:
    cmim_hf.chem.InvalidSmilesError: for an invalid reference SMILES (with its row).
Examples:
    >>> TanimotoSimilarity(keep_in_memory=True).compute(predictions=["OCC", "C1CC"], references=["CCO", "CCO"])
    {'tanimoto_similarity': 0.5, 'tanimoto_similarity_valid': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TanimotoSimilarity(evaluate.Metric):
    """Mean ECFP4 Tanimoto similarity to the inputs; see the module docstring."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        if not references:
            raise ValueError("no molecules to score")
        for index, smiles in enumerate(references):
            parse_smiles(smiles, index=index)
        similarity = tanimoto_similarity(predictions, references)  # NaN where the prediction is invalid
        valid = ~np.isnan(similarity)
        return {
            "tanimoto_similarity": float(np.where(valid, similarity, 0.0).mean()),
            "tanimoto_similarity_valid": float(similarity[valid].mean()) if valid.any() else 0.0,
        }
