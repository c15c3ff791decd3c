"""openclap's trainer (kept apart from the library, which never imports it).

One loop, ``openclap_train.engine.run(task)``, trains three tasks: CLAP training (``openclap_train.train``,
``openclap train`` / ``python -m openclap_train``, also under ``torchrun``), multi-task audio pretraining
(``openclap_train.multitask``, ``openclap pretrain-audio``) and captioning (``openclap_train.captioning``).
Every recipe has the same loop keys (``openclap_train.config.LoopConfig``, with the ``optim:`` block).

Reproducibility guarantees (tested in ``tests/test_train_distributed.py``):

* **Exact resume.** A run killed at any point and restarted with ``--resume latest`` ends with the same
  parameters, bitwise, as an uninterrupted run (CPU, fp32, same number of processes). Data order and
  per-sample randomness are functions of (seed, epoch, index) (see ``openclap_train.data``) and the
  global RNG is reseeded from (seed, step, rank) before every step (``engine.step_seed``), so nothing
  depends on how the run got to a step.
* **N processes == 1 process.** With global batch ``B``, ``W`` processes of ``B / W`` see exactly the
  global batches one process sees (rank slices in rank order), and ``openclap.loss.ClipLoss`` gathers
  the features so every rank scores the whole batch; DDP's gradient average then equals the
  one-process gradient. Two things still depend on the split and are the user's choice:
  BatchNorm batch statistics (HTSAT's ``bn0``, CNN14's layers) are per process, so set
  ``batchnorm: frozen`` (running statistics, affine parameters still train; right for fine-tuning) or
  ``sync`` (SyncBatchNorm, CUDA only) when equality matters; and dropout/drop-path masks are drawn per
  process, so equality holds only with those rates at 0 (``model_overrides``). The default,
  ``batchnorm: train`` with the preset's dropout, is the usual CLAP training and is what the
  from-scratch recipe uses.
"""

from openclap_train.config import TrainConfig, TrainConfigError, load_config
from openclap_train.train import TrainResult, main, train

__all__ = ["TrainConfig", "TrainConfigError", "TrainResult", "load_config", "main", "train"]
