"""The integrity suite: mislabelled, poisoned, duplicated, leaked and outlying training data.

Every check here reads ``ctx.train_data`` (given with ``--train-data``), except the model-level
backdoor checks (``integrity.backdoor_scan``, ``integrity.strip``), which need only the evaluation
data; leakage reads both.
"""

from roadworthy.checks.integrity import backdoor, duplicates, label_issues, outliers, poisoning

__all__ = ["backdoor", "duplicates", "label_issues", "outliers", "poisoning"]
