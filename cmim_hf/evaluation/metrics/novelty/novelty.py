"""Novelty of generated SMILES with respect to a reference (training) set, as a local
``evaluate`` metric.

Load with ``evaluate.load("<path to this folder>")`` (no Hub access needed) or instantiate
``Novelty()`` directly. The reference set is a keyword argument of ``compute`` (it is not aligned
with the predictions).
"""

import datasets
import evaluate

from cmim_hf.generation.metrics import fraction_novel

_DESCRIPTION = (
    "Fraction of the distinct valid generated molecules whose canonical SMILES is not in the reference "
    "set (canonicalised too); 0.0 when no generated SMILES is valid."
)
_CITATION = "Polykovskiy et al., Molecular Sets (MOSES), Front. Pharmacol. 11, 2020."
_KWARGS_DESCRIPTION = """
Args:
    predictions: generated SMILES strings.
    reference_smiles: the reference set, e.g. the training molecules (every entry must be valid).
Returns:
    {"novelty": float in [0, 1]}
Raises:
    cmim_hf.chem.InvalidSmilesError: for an invalid reference SMILES (with its row).
Examples:
    >>> Novelty(keep_in_memory=True).compute(predictions=["OCC", "c1ccccc1", "C1CC"], reference_smiles=["CCO"])
    {'novelty': 0.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Novelty(evaluate.Metric):
    """Fraction of distinct valid molecules absent from a reference set; see the module docstring."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions: list[str], reference_smiles: list[str] | None = None) -> dict[str, float]:
        if not predictions:
            raise ValueError("no molecules to score")
        if reference_smiles is None:
            raise ValueError("pass reference_smiles=[...] (e.g. the training set) to compute novelty")
        return {"novelty": fraction_novel(predictions, reference_smiles)}
