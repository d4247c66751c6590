"""Validity of generated SMILES as a local ``evaluate`` metric.

Load with ``evaluate.load("<path to this folder>")`` (no Hub access needed) or instantiate
``Validity()`` directly.
"""

import datasets
import evaluate

from cmim_hf.generation.metrics import fraction_valid

_DESCRIPTION = "Fraction of generated SMILES that RDKit parses and sanitises (empty strings are invalid)."
_CITATION = "Polykovskiy et al., Molecular Sets (MOSES), Front. Pharmacol. 11, 2020."
_KWARGS_DESCRIPTION = """
Args:
    predictions: generated SMILES strings.
Returns:
    {"validity": float in [0, 1]}
Examples:
    >>> Validity(keep_in_memory=True).compute(predictions=["CCO", "C1CC", "c1ccccc1", ""])
    {'validity': 0.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Validity(evaluate.Metric):
    """Fraction of valid SMILES; see the module docstring."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions: list[str]) -> dict[str, float]:
        if not predictions:
            raise ValueError("no molecules to score")
        return {"validity": fraction_valid(predictions)}
