"""The loss's input and setup errors name the problem (mutants of loss.py that the value tests let through)."""

from __future__ import annotations

import pytest
import torch

from openclap.loss import gather_features, gather_labels, positive_mask


def test_gathering_without_a_process_group_says_how_to_fix_it() -> None:
    with pytest.raises(RuntimeError, match=r"world_size=2 but torch.distributed is not initialised; call "
                       r"torch\.distributed\.init_process_group first \(torchrun does it for the trainer\)"):  # fmt: skip
        gather_features(torch.zeros(2, 3), 0, 2)
    with pytest.raises(RuntimeError, match=r"^world_size=2 but torch.distributed is not initialised$"):
        gather_labels(torch.zeros(2, dtype=torch.long), 0, 2)
    labels = torch.tensor([3, 1])
    assert gather_labels(labels, 0, 1) is labels  # one process: nothing to gather


def test_positive_mask_rejects_3d_labels_naming_the_shape() -> None:
    with pytest.raises(ValueError, match=r"labels must be \(N,\) or \(N, K\), got shape \(2, 1, 1\)"):
        positive_mask(torch.zeros(2, 1, 1, dtype=torch.long))
    assert positive_mask(torch.tensor([0, 0, 1])).tolist() == [[True, True, False], [True, True, False],
                                                               [False, False, True]]  # fmt: skip
