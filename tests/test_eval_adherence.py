"""genlab.eval.adherence: prompted against unprompted samples, checked against the prompt."""

from __future__ import annotations

import pytest

from genlab.errors import GenlabError
from genlab.eval.adherence import prompt_adherence


def test_prompt_adherence_reports_shares_for_each_prompt(train_tiny):
    run = train_tiny("flow-matching", steps=2, condition="text")
    result = prompt_adherence(run, ["a three", "a thin upright seven"], n=16, guidance=2.0, steps=2)
    assert set(result) == {"a three", "a thin upright seven"}
    for shares in result.values():
        assert set(shares) == {"prompted", "unprompted"} and all(0.0 <= v <= 1.0 for v in shares.values())


def test_prompt_adherence_needs_a_captioned_run(train_tiny):
    with pytest.raises(GenlabError, match="trained without captions"):
        prompt_adherence(train_tiny("flow-matching", steps=1), ["a three"], n=4)
