"""Reconstruction accuracy of a sequence auto-encoder as a local ``evaluate`` metric.

Load with ``evaluate.load("<path to this folder>")`` (no Hub access needed) or instantiate
``Reconstruction()`` directly.
"""

import datasets
import evaluate

_DESCRIPTION = (
    "Token accuracy (correct tokens / all reference tokens, micro-averaged over molecules) and exact "
    "match (fraction of molecules whose every token is right) of reconstructed token sequences."
)
_CITATION = ""
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted token ids per molecule (lists of ints, padding removed).
    references: reference token ids per molecule, same lengths as the predictions.
Returns:
    {"token_accuracy": float, "exact_match": float}
Examples:
    >>> metric = Reconstruction(keep_in_memory=True)
    >>> metric.compute(predictions=[[5, 6, 2], [5, 7, 2]], references=[[5, 6, 2], [5, 6, 2]])
    {'token_accuracy': 0.8333333333333334, 'exact_match': 0.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Reconstruction(evaluate.Metric):
    """Token accuracy and exact match; see the module docstring."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions: list[list[int]], references: list[list[int]]) -> dict[str, float]:
        if not references:
            raise ValueError("no molecules to score")
        correct = total = exact = 0
        for index, (predicted, reference) in enumerate(zip(predictions, references)):
            if len(predicted) != len(reference):
                raise ValueError(
                    f"molecule {index}: {len(predicted)} predicted tokens for {len(reference)} reference tokens"
                )
            matches = sum(p == r for p, r in zip(predicted, reference))
            correct += matches
            total += len(reference)
            exact += matches == len(reference)
        return {"token_accuracy": correct / total, "exact_match": exact / len(references)}
