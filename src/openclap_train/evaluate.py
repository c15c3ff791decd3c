"""Validation during training: zero-shot accuracy from label prompts and text-to-audio recall.

Audio is embedded deterministically as at inference: clips longer than the model's window are split
into overlapping windows (``openclap.audio.windows.split_windows``) whose embeddings are averaged.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from openclap.audio.windows import split_windows
from openclap.model import ClapModel
from openclap.pipeline import fill_template
from openclap.text.tokenizer import TextTokenizer
from openclap_train.data import EvalSet


def prompt_label(label: str) -> str:
    """A label as it goes into a prompt: underscores become spaces (ESC-50's ``crying_baby``)."""
    return label.replace("_", " ")


@torch.inference_mode()
def embed_waves(
    model: ClapModel, waves: list[np.ndarray], batch_size: int, device: torch.device
) -> torch.Tensor:
    """(N, D) L2-normalised clip embeddings (window mean) of waveforms at the model's rate."""
    audio = model.config.audio
    hop = max(1, round(audio.hop_seconds * audio.sample_rate))
    windows, owners = [], []
    for i, wave in enumerate(waves):
        w, _ = split_windows(
            torch.from_numpy(wave), audio.num_samples, hop, audio.pad_mode, audio.sample_rate
        )
        windows.append(w)
        owners.extend([i] * len(w))
    all_windows = torch.cat(windows)  # (W, N)
    embeds = torch.cat(
        [
            model.encode_audio(all_windows[s : s + batch_size].to(device)).float().cpu()
            for s in range(0, len(all_windows), batch_size)
        ]
    )  # (W, D)
    sums = torch.zeros(len(waves), embeds.shape[1]).index_add_(0, torch.tensor(owners), embeds)
    return F.normalize(sums, dim=-1)


@torch.inference_mode()
def embed_texts(
    model: ClapModel, tokenizer: TextTokenizer, texts: list[str], batch_size: int, device: torch.device
) -> torch.Tensor:
    """(M, D) L2-normalised text embeddings."""
    out = []
    for s in range(0, len(texts), batch_size):
        tok = tokenizer(texts[s : s + batch_size])
        out.append(
            model.encode_text(tok["input_ids"].to(device), tok["attention_mask"].to(device)).float().cpu()
        )
    return torch.cat(out)


def retrieval_recall(
    audio: torch.Tensor, text: torch.Tensor, captions: list[str], ks=(1, 5)
) -> dict[str, float]:
    """Text-to-audio recall@k: a query hits when an audio with the *same caption* ranks in its top k.

    Captions in these sets come from templates, so several clips share a caption; those clips are
    indistinguishable from the text and all count as relevant.
    """
    unique = list(dict.fromkeys(captions))
    cap_index = {c: i for i, c in enumerate(unique)}
    relevant = torch.zeros(len(unique), len(captions), dtype=torch.bool)
    for j, c in enumerate(captions):
        relevant[cap_index[c], j] = True
    query = text[[captions.index(c) for c in unique]]  # one query per unique caption
    sims = query @ audio.T  # (Q, N)
    order = sims.argsort(dim=1, descending=True)
    hits = relevant.gather(1, order)  # (Q, N) relevance in ranked order
    return {f"t2a_R@{k}": float(hits[:, :k].any(dim=1).float().mean()) for k in ks}


def evaluate(
    model: ClapModel,
    tokenizer: TextTokenizer,
    sets: list[EvalSet],
    template: str,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Metrics per set, keys ``val/<set>/zeroshot_acc``, ``val/<set>/t2a_R@1``, ``val/<set>/t2a_R@5``."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    metrics: dict[str, float] = {}
    try:
        for es in sets:
            audio = embed_waves(model, es.waves, batch_size, device)
            text = embed_texts(model, tokenizer, es.captions, batch_size, device)
            for k, v in retrieval_recall(audio, text, es.captions).items():
                metrics[f"val/{es.name}/{k}"] = v
            labels = [lab for lab in es.labels if lab is not None]
            if len(labels) == len(es.labels):
                classes = sorted(set(labels))
                prompts = [fill_template(es.template or template, prompt_label(c)) for c in classes]
                class_emb = embed_texts(model, tokenizer, prompts, batch_size, device)
                pred = (audio @ class_emb.T).argmax(dim=1)
                truth = torch.tensor([classes.index(lab) for lab in labels])
                metrics[f"val/{es.name}/zeroshot_acc"] = float((pred == truth).float().mean())
    finally:
        model.train(was_training)
    return metrics
