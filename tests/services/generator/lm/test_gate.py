"""The LM quality gate (pure logic)."""

from services.generator.lm.gate import quality_gate


def test_the_gate_wants_the_margin_on_validation_perplexity():
    assert quality_gate(24.66, 19.43, 0.2).passed  # the planning run: 1.27
    assert not quality_gate(24.66, 21.0, 0.2).passed
    assert not quality_gate(10.0, 10.0, 0.0 + 1e-9).passed
    result = quality_gate(12.0, 10.0, 0.1)
    assert result.passed and abs(result.ratio - 1.2) < 1e-12
    assert "passes the gate" in result.describe() and "1.200" in result.describe()
