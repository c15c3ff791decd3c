"""Multi-task pretraining of CLAP's audio tower (the paper's "HTSAT-22" stage).

Modules: ``config`` (TaskSpec, SamplingConfig, PretrainConfig), ``tasks`` (manifest rows -> targets),
``sampling`` (proportional / uniform / temperature task mixing, mixed or homogeneous batches), ``model``
(tower + per-task heads, losses), ``data`` (crops keyed by task), ``evaluate`` (per-task validation),
``train`` (the run loop); the ``final/`` audio-tower directory is ``openclap_train.audio_tower``'s.
Nothing is imported here so that ``import openclap_train.multitask.config`` stays light.
"""
