"""Evasion attacks as plain functions, one module per paper, usable without any check.

Every attack works in pixel space [0, 1] and returns inputs inside its budget and [0, 1]::

    import roadworthy
    from roadworthy.attacks import pgd

    model = roadworthy.load_model("model.pt", input_shape=(3, 32, 32))
    x_adv = pgd(model, x, y, eps=8 / 255, steps=20)          # NumPy in, NumPy out

White-box attacks take a roadworthy model with gradients (``model.forward_torch``) or a function
``forward(x) -> logits`` on torch tensors; black-box attacks take a roadworthy model or a function from a
NumPy batch to scores (logits or probabilities, as each says) or labels.

==================  ==========================================  ===============================
module              attack                                      threat model
==================  ==========================================  ===============================
``fgsm``            FGSM (Goodfellow et al., ICLR 2015)          white-box, L-inf
``pgd``             PGD (Madry et al., ICLR 2018)                white-box, L-inf or L2
``apgd``            Auto-PGD, CE or DLR (Croce & Hein, 2020)     white-box, L-inf or L2
``fmn``             Fast Minimum-Norm (Pintor et al., 2021)      white-box, L-inf or L2, no budget
``fmn.ddn``         DDN (Rony et al., CVPR 2019)                 white-box, L2, no budget
``square``          Square Attack (Andriushchenko et al., 2020)  scores only, L-inf
``hopskipjump``     HopSkipJump (Chen et al., S&P 2020)          labels only, L2
``pixels``          few-pixel and line attacks by DE (Su 2019)   scores only, L0
``laser``           Adversarial Laser Beam (Duan et al., 2021)   scores only, physical-style
``sticker``         universal patch (Brown et al., 2017)         white-box, physical-style
==================  ==========================================  ===============================

``fmn`` and ``ddn`` return each input's smallest adversarial perturbation, so one run gives the robust
accuracy at every strength (``robust_curve``); ``min_norm`` picks FMN for L-inf and DDN for L2. The package's names ``fgsm``, ``pgd`` and ``apgd`` are the functions; import helpers from the modules
(``from roadworthy.attacks.pgd import pgd``). This package imports only roadworthy's ground floor and
``roadworthy.models.base``, never ``roadworthy.checks``.
"""

from roadworthy.attacks._losses import ce_loss, dlr_loss, input_gradient, margin
from roadworthy.attacks._pool import StartPool
from roadworthy.attacks.apgd import apgd
from roadworthy.attacks.fgsm import fgsm
from roadworthy.attacks.fmn import MinNorm, ddn, fmn, min_norm, robust_curve
from roadworthy.attacks.hopskipjump import hop_skip_jump
from roadworthy.attacks.laser import laser_attack, render_laser
from roadworthy.attacks.pgd import pgd
from roadworthy.attacks.pixels import few_pixel, line_attack
from roadworthy.attacks.square import square_attack
from roadworthy.attacks.sticker import paste, train_patch

__all__ = [
    "MinNorm",
    "StartPool",
    "apgd",
    "ce_loss",
    "ddn",
    "dlr_loss",
    "few_pixel",
    "fgsm",
    "fmn",
    "hop_skip_jump",
    "input_gradient",
    "laser_attack",
    "line_attack",
    "margin",
    "min_norm",
    "paste",
    "pgd",
    "render_laser",
    "robust_curve",
    "square_attack",
    "train_patch",
]
