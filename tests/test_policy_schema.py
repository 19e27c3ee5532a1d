"""The policy file's ``schema`` section: the tabular feature schema's overrides."""

from __future__ import annotations

import pytest

from roadworthy.errors import InvalidInputError
from roadworthy.policy import DEFAULT_POLICY_TEXT, Policy


def test_schema_section_is_read_and_default_is_empty():
    p = Policy.from_dict({"gates": [], "schema": {"immutable": ["age"], "ranges": {"income": [0, 9]}}})
    assert p.schema == {"immutable": ["age"], "ranges": {"income": [0, 9]}}
    assert Policy().schema == {}
    assert "schema:" in DEFAULT_POLICY_TEXT  # documented in the commented template


def test_schema_must_be_a_mapping():
    with pytest.raises(InvalidInputError, match="schema"):
        Policy.from_dict({"schema": ["age"]})
