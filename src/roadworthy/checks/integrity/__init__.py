"""The integrity suite: mislabelled, poisoned, duplicated, leaked and outlying training data.

Every check here reads ``ctx.train_data`` (given with ``--train-data``); leakage also reads the
evaluation data ``ctx.data``.
"""

from roadworthy.checks.integrity import duplicates, label_issues, outliers, poisoning

__all__ = ["duplicates", "label_issues", "outliers", "poisoning"]
