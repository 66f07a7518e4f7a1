"""The quality gate: a fine-tuned model is served only if it beats its base on validation.

Both perplexities come from the ONNX engine in the same run, on the same rows. The gate
passes when ``base / candidate >= 1 + margin`` (margin 0.05: at least 5% lower perplexity).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GateResult:
    passed: bool
    ratio: float
    margin: float

    def describe(self) -> str:
        verdict = "passes" if self.passed else "fails"
        return (
            f"{verdict} the gate: base / fine-tuned validation perplexity {self.ratio:.3f} "
            f"(needs >= {1 + self.margin:.3f})"
        )


def quality_gate(base_perplexity: float, candidate_perplexity: float, margin: float) -> GateResult:
    ratio = base_perplexity / candidate_perplexity if candidate_perplexity > 0 else 0.0
    return GateResult(ratio >= 1 + margin, ratio, margin)
