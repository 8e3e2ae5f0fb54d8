"""Fuzz ``Architecture.from_json``: random, truncated, corrupted and wrapped JSON texts give ArchitectureError.

* ``test_from_json_random_text`` -- 250 examples of random text, truncated, corrupted and random JSON.
* ``test_from_json_truncated_exhaustive`` cuts every base's JSON at every position (thousands of cases).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Callable

from hypothesis import given
from hypothesis import strategies as st

from _fuzz_helpers import BASES, EXAMPLE, N_HYPOTHESIS, fuzz_settings, json_values, parse_json, record
from nni_nas_ext.core import Architecture, ArchitectureError


BASE_JSONS = [b.arch.to_json() for b in BASES] + [json.dumps(EXAMPLE, indent=2)]


@st.composite
def json_texts(draw: Callable[[st.SearchStrategy], Any]) -> str:
    kind = draw(st.sampled_from(["text", "truncated", "corrupted", "random_json", "wrapped"]))
    if kind == "text":
        return draw(st.text(max_size=200))
    if kind == "random_json":
        return json.dumps(draw(json_values))
    text = draw(st.sampled_from(BASE_JSONS))
    if kind == "truncated":
        return text[:draw(st.integers(0, len(text) - 1))]
    if kind == "wrapped":  # valid JSON (mostly), but the wrong container or trailing junk
        template = draw(st.sampled_from(["[{0}]", '{{"a": {0}}}', "{0}{0}", "{0},", " {0} \n", "{0} x"]))
        return json.dumps(text) if draw(st.booleans()) else template.format(text)
    i = draw(st.integers(0, len(text) - 1))  # corrupted: one character replaced, inserted or deleted
    action = draw(st.sampled_from(["replace", "insert", "delete"]))
    char = draw(st.one_of(st.sampled_from(list('{}[]",:0-9.eE tfn\\')), st.characters()))
    if action == "replace":
        return text[:i] + char + text[i + 1:]
    if action == "insert":
        return text[:i] + char + text[i:]
    return text[:i] + text[i + 1:]


def test_from_json_random_text():
    counts: Counter = Counter()

    @fuzz_settings(N_HYPOTHESIS)
    @given(text=json_texts())
    def run(text: str) -> None:
        record(parse_json(text), counts)

    run()
    assert sum(counts.values()) >= N_HYPOTHESIS
    assert counts["invalid"] > counts["valid"], counts


def test_from_json_truncated_exhaustive():
    """Every proper prefix of every base's JSON is invalid JSON and gives ArchitectureError."""
    cuts = 0
    for text in BASE_JSONS:
        for cut in range(len(text)):
            outcome = parse_json(text[:cut])
            assert isinstance(outcome, ArchitectureError), text[:cut]
            assert "valid JSON" in outcome.rule, outcome
            cuts += 1
        assert parse_json(text) == Architecture.from_dict(json.loads(text))
    assert cuts >= 500
