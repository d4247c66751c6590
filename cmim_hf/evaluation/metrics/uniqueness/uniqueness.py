"""Uniqueness of generated SMILES as a local ``evaluate`` metric.

Load with ``evaluate.load("<path to this folder>")`` (no Hub access needed) or instantiate
``Uniqueness()`` directly.
"""

import datasets
import evaluate

from cmim_hf.generation.metrics import fraction_unique

_DESCRIPTION = (
    "Number of distinct canonical SMILES among the valid generated SMILES divided by the number of valid "
    "ones (invalid SMILES are ignored; 0.0 when none is valid)."
)
_CITATION = "Polykovskiy et al., Molecular Sets (MOSES), Front. Pharmacol. 11, 2020."
_KWARGS_DESCRIPTION = """
Args:
    predictions: generated SMILES strings.
Returns:
    {"uniqueness": float in [0, 1]}
Examples:
    >>> Uniqueness(keep_in_memory=True).compute(predictions=["CCO", "OCC", "c1ccccc1", "C1CC"])
    {'uniqueness': 0.6666666666666666}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Uniqueness(evaluate.Metric):
    """Fraction of distinct molecules among the valid ones; see the module docstring."""

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
        return {"uniqueness": fraction_unique(predictions)}
