"""What every suite's tabular checks share: the table's feature schema, inferred once per session.

The schema (:mod:`roadworthy.schema`) is inferred from the training data when there is one, otherwise
from the evaluation data, with the policy file's ``schema`` section applied (the session puts it in
``ctx.data.meta["schema"]``). Shift, attack and OOD checks project every row they build onto it.
"""

from __future__ import annotations

from roadworthy.checks.base import Context
from roadworthy.schema import Schema, infer_schema

__all__ = ["schema_for"]


def schema_for(ctx: Context) -> Schema:
    """The session's feature schema (computed once, shared by every check)."""

    def build() -> Schema:
        ref = ctx.train_data if ctx.train_data is not None else ctx.data
        names = ctx.data.feature_names or ref.feature_names
        where = "the training data" if ctx.train_data is not None else "the evaluation data"
        return infer_schema(
            ref.x.reshape(len(ref.x), -1),
            names,
            overrides=ctx.data.meta.get("schema"),
            source=f"inferred from {where}",
        )

    return ctx.cached("tabular_schema", build)
