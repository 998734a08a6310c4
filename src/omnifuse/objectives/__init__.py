"""Training objectives on tensors: contrastive, matching, masked modelling and captioning.

Each objective is a pure function in :mod:`omnifuse.objectives.functional` plus a thin module
here that holds its hyperparameters (and, for contrastive learning, the temperature) and returns
the same named output. Objectives import nothing from models, training or the CLI.
"""

from omnifuse.layers.masking import (
    FramePatches,
    RandomMasking,
    frames_to_patches,
    patchify,
    random_masking,
    take_tokens,
    unpatchify,
    unshuffle_tokens,
)
from omnifuse.objectives.captioning import CaptioningLoss
from omnifuse.objectives.constraints import Constrained, constrain_all_
from omnifuse.objectives.contrastive import ContrastiveLoss, LogitScale
from omnifuse.objectives.distributed import gather_features
from omnifuse.objectives.functional import (
    IGNORE_INDEX,
    ContrastiveOutput,
    MaskedTokens,
    MatchingOutput,
    MatchingPairs,
    ReconstructionOutput,
    TeacherForcing,
    TokenLossOutput,
    contrastive_loss,
    lm_loss,
    mae_loss,
    mask_tokens,
    matching_loss,
    mine_hard_negatives,
    mlm_loss,
    sample_matching_pairs,
    shift_for_teacher_forcing,
)
from omnifuse.objectives.masked_modeling import MaskedLanguageModeling, MaskedReconstruction
from omnifuse.objectives.matching import MatchingLoss

__all__ = [
    "IGNORE_INDEX",
    "CaptioningLoss",
    "Constrained",
    "ContrastiveLoss",
    "ContrastiveOutput",
    "FramePatches",
    "LogitScale",
    "MaskedLanguageModeling",
    "MaskedReconstruction",
    "MaskedTokens",
    "MatchingLoss",
    "MatchingOutput",
    "MatchingPairs",
    "RandomMasking",
    "ReconstructionOutput",
    "TeacherForcing",
    "TokenLossOutput",
    "constrain_all_",
    "contrastive_loss",
    "frames_to_patches",
    "gather_features",
    "lm_loss",
    "mae_loss",
    "mask_tokens",
    "matching_loss",
    "mine_hard_negatives",
    "mlm_loss",
    "patchify",
    "random_masking",
    "sample_matching_pairs",
    "shift_for_teacher_forcing",
    "take_tokens",
    "unpatchify",
    "unshuffle_tokens",
]
