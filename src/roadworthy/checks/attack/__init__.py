"""The attack suite: evasion attacks, white-box and black-box, digital and physical.

Each check measures one attack of :mod:`roadworthy.attacks` through the one protocol of
:class:`~roadworthy.checks.attack.base.AttackCheck`. Every attack works in pixel space [0, 1] whatever
the model's normalisation, and every perturbation is verified to stay inside its budget and the valid
range. Importing this package registers its checks:

- white-box: ``attack.fgsm``, ``attack.pgd_linf``, ``attack.pgd_l2``, ``attack.apgd_ce``,
  ``attack.apgd_dlr``; ``attack.autoattack`` with the optional ``pyautoattack`` package
- black-box: ``attack.square`` (scores), ``attack.hopskipjump`` (labels only)
- sparse: ``attack.pixels`` (few pixels), ``attack.line`` (one row or column segment)
- physical-style: ``attack.laser`` (black-box), ``attack.sticker`` (universal patch, white-box)
- ``attack.summary``: one trust verdict over all of them, and the curves side by side
"""

from roadworthy.checks.attack import (  # noqa: F401
    apgd,
    autoattack,
    fgsm,
    hopskipjump,
    laser,
    pgd,
    pixels,
    square,
    sticker,
    summary,
    tabular,  # tables: attack.tab_score, attack.tab_boundary (schema-projected)
)
