"""Multi-task pretraining of CLAP's audio tower (the paper's "HTSAT-22" stage).

Modules: ``config`` (TaskSpec, SamplingConfig, PretrainConfig), ``tasks`` (manifest rows -> targets),
``sampling`` (proportional / uniform / temperature task mixing, mixed or homogeneous batches), ``model``
(tower + per-task heads, losses), ``data`` (crops keyed by task), ``evaluate`` (per-task validation),
``handover`` (the ``final/`` audio-tower directory and ``load_audio_tower``), ``train`` (the run loop).
Nothing is imported here so that ``import openclap_train.multitask.config`` stays light.
"""
