"""Train a captioning model (CLAP audio embedding -> mapper -> GPT-2 decoder) by teacher forcing.

    python -m openclap_train.captioning configs/caption-small-shared-data.yaml --run-dir runs/caption-small
    python -m openclap_train.captioning CONFIG --run-dir DIR --resume latest      # after an interruption

What is trained (``train``):

* ``prefix``: the mapping network only (audio tower and decoder frozen; msclap's clapcap recipe,
  ``freeze_gpt_weights: True``);
* ``decoder``: mapping network + decoder (audio tower frozen);
* ``full``: everything, the audio tower included (random crops of the waveforms every step).

With a frozen audio tower the CLAP audio embeddings of the training clips are computed once, with the
same deterministic windows as inference, and cached in the run directory (``embeddings/``).

The caption model is built from ``clap`` (a CLAP model directory, or a CLAP training run directory whose
``final/`` or latest checkpoint is used): its audio tower and, with ``decoder_init: clap_text``, its text
tower's GPT-2 weights as the decoder's starting point (same tokenizer, same sizes). ``init`` starts from a
caption model instead (a caption model directory or preset, with ``init_checkpoint``, e.g. msclap's
``clapcap_weights_2023.pth``).

The run directory gets ``config.yaml``, ``metrics.jsonl``, ``checkpoints/`` (atomic, ``--resume latest``,
the trainer's own checkpoint files) and ``final/`` (``openclap.caption.load_captioner(final)``); with
``test_manifest`` also ``eval.json``: BLEU/ROUGE-L/CIDEr-D of the generated captions on the test clips and
of the nearest-caption baseline (the training caption of the nearest training clip in CLAP space).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from openclap.caption.config import CaptionConfig, MapperConfig
from openclap.caption.evaluate import nearest_caption_baseline, report_from_captions
from openclap.caption.factory import create_caption_model, load_caption_model, resolve_caption_config
from openclap.caption.generate import GenerationConfig
from openclap.caption.metrics import score_captions
from openclap.caption.pipeline import CaptionPipeline, CaptionTokenizer
from openclap.caption.rerank import CLAP_SUBDIR, ClapReranker, bundled_clap
from openclap.config import ClapConfig, TextConfig
from openclap.errors import state_dict_fingerprint
from openclap.factory import TOKENIZER_DIR, create_model, is_model_dir, load_model
from openclap.model import ClapModel
from openclap.pipeline import ClapPipeline
from openclap.text.tokenizer import TextTokenizer
from openclap_train import checkpoint as ckpt
from openclap_train import engine
from openclap_train.config import LoopConfig, ManifestSpec, OptimConfig, TrainConfigError, build
from openclap_train.data import ManifestDataset, read_manifest, sample_seed
from openclap_train.distributed import DistInfo
from openclap_train.engine import RunResult, Task

logger = logging.getLogger("openclap_train.captioning")

TRAIN_MODES = ("prefix", "decoder", "full")
# captioning's optimiser defaults: cosine to 5 % of lr after 50 warmup steps, gradient norm clipped at 1
CAPTION_OPTIM = OptimConfig(lr=1e-3, weight_decay=0.01, warmup_steps=50, min_lr_ratio=0.05, grad_clip=1.0)


@dataclass
class CaptionTrainConfig(LoopConfig):
    """A captioning run; ``config.yaml`` in the run directory is this, resolved."""

    # the loop's keys with captioning's defaults (cosine to 5 % of lr after 50 warmup steps)
    optim: OptimConfig = field(default_factory=lambda: replace(CAPTION_OPTIM))
    batch_size: int = 64
    max_steps: int = 1000
    log_every: int = 50
    eval_every: int = 250
    save_every: int = 250
    keep_checkpoints: int = 2
    task: str = "captioning"
    clap: str | None = None  # CLAP model directory / run directory / preset (audio tower, tokenizer)
    clap_checkpoint: str | None = None  # weights for a CLAP preset
    init: str | None = None  # caption model directory or preset to start from instead of `clap`
    init_checkpoint: str | None = None  # weights for a caption preset (e.g. clapcap_weights_2023.pth)
    tokenizer: str | None = None  # tokenizer directory (default: the CLAP model's / caption model's)
    mapper: dict[str, Any] = field(
        default_factory=lambda: {"prefix_length": 8, "clip_length": 8, "num_layers": 2, "num_heads": 4}
    )
    decoder: dict[str, Any] = field(
        default_factory=dict
    )  # GPT2Config kwargs (default: the CLAP text tower's)
    decoder_init: str = "clap_text"  # "clap_text" (copy the CLAP text tower's GPT-2) or "random"
    max_length: int = 32  # caption tokens, suffix included
    train: str = "decoder"  # prefix | decoder | full
    train_manifest: list[ManifestSpec] = field(default_factory=list)
    val_manifest: list[ManifestSpec] = field(default_factory=list)
    test_manifest: list[ManifestSpec] = field(default_factory=list)
    embed_noise: float = 0.0  # std of Gaussian noise added to the (normalised) audio embeddings
    # frozen audio tower: also embed this many random crops of every training clip (seeded) and draw each
    # step's embedding among them and the deterministic one (augmentation at the cost of more embedding)
    train_crops: int = 0
    # frozen audio tower: with probability neighbour_prob, a step's target caption is that of one of the
    # clip's `neighbour_captions` nearest training clips in CLAP space (the clip itself included), so the
    # decoder learns the captions of a neighbourhood, not of one clip (0: off)
    neighbour_captions: int = 0
    neighbour_prob: float = 0.5
    beam_size: int = 3  # decoding for the final test evaluation (when `decoding` does not say)
    # decoding for the final test evaluation: GenerationConfig fields (the search), plus optionally
    # `rerank: clap` (and `rerank_lm_weight`) for CLAP reranking, e.g. {beam_size: 8, rerank: clap}
    decoding: dict[str, Any] = field(default_factory=dict)
    # decoding settings to choose from on the validation split (val_manifest): each is scored (CIDEr-D of
    # the validation clips) and the best one decodes the test split; the table is logged in eval.json
    decoding_candidates: list[dict[str, Any]] = field(default_factory=list)
    # CLAP model for rerank: clap (default: `clap` itself; it must share the captioner's audio tower). It is
    # saved with the final model (final/clap/) so that `openclap caption --rerank clap` finds it.
    rerank_clap: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task != "captioning":
            raise TrainConfigError(f"task must be 'captioning' for this trainer, got {self.task!r}")
        if self.train not in TRAIN_MODES:
            raise TrainConfigError(f"train must be one of {TRAIN_MODES}, got {self.train!r}")
        if self.decoder_init not in ("clap_text", "random"):
            raise TrainConfigError(f"decoder_init must be 'clap_text' or 'random', got {self.decoder_init!r}")
        if (self.clap is None) == (self.init is None):
            raise TrainConfigError(
                "give exactly one of `clap` (a CLAP model to build on) or `init` (a caption model)"
            )
        if self.train_crops < 0 or self.neighbour_captions < 0 or not 0 <= self.neighbour_prob <= 1:
            raise TrainConfigError(
                f"need train_crops >= 0, neighbour_captions >= 0, 0 <= neighbour_prob <= 1; got "
                f"{self.train_crops}, {self.neighbour_captions}, {self.neighbour_prob}"
            )
        for d in [self.decoding, *self.decoding_candidates]:
            try:
                split_decoding(d)
            except (TypeError, ValueError) as exc:
                raise TrainConfigError(f"decoding setting {d}: {exc}") from exc


def split_decoding(setting: dict[str, Any]) -> tuple[GenerationConfig, bool, float]:
    """A recipe's decoding setting -> (the search, whether to rerank by CLAP, the reranker's lm_weight)."""
    search = dict(setting)
    rerank, lm_weight = search.pop("rerank", None), float(search.pop("rerank_lm_weight", 0.0))
    if rerank not in (None, "clap"):
        raise ValueError(f"rerank must be null or 'clap', got {rerank!r}")
    if lm_weight < 0:
        raise ValueError(f"rerank_lm_weight must be >= 0, got {lm_weight}")
    return GenerationConfig(**search), rerank == "clap", lm_weight


def load_caption_train_config(
    path: str | Path, overrides: dict[str, Any] | None = None
) -> CaptionTrainConfig:
    """Read a YAML recipe (+ plain overrides) into a ``CaptionTrainConfig``; unknown keys fail."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"captioning config {p} not found; see configs/caption-small-shared-data.yaml"
        )
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build(CaptionTrainConfig, data, where=str(p))


# ------------------------------------------------------------------------------------ model setup
def _load_clap(cfg: CaptionTrainConfig) -> tuple[ClapModel, Path | None]:
    """The CLAP model (eval mode) and its tokenizer directory, from a model dir, a run dir or a preset."""
    source = Path(str(cfg.clap))
    if not source.exists() and len(source.parts) > 1:  # a path (a preset name has no separator)
        raise FileNotFoundError(
            f"the recipe's CLAP model (clap: {cfg.clap}) does not exist: {source.resolve()}; train that run "
            "first (the shipped recipe's: `openclap train configs/small-shared-data-capval.yaml --run-dir "
            "runs/small-capval`, docs/captioning.md) or point `clap:` at another CLAP run, model directory "
            "or preset (--set clap=DIR)"
        )
    if source.is_dir() and not is_model_dir(source) and (source / "model_config.json").is_file():
        if is_model_dir(source / "final"):
            source = source / "final"
        else:  # a CLAP training run without final/: its latest checkpoint
            latest = ckpt.latest_checkpoint(source / "checkpoints")
            if latest is None:
                raise FileNotFoundError(f"CLAP run {source} has neither final/ nor checkpoints/")
            config = ClapConfig.from_dict(json.loads((source / "model_config.json").read_text()))
            model = create_model(config)
            model.load_state_dict(ckpt.load_checkpoint_file(latest)["model"], strict=True)
            logger.info("CLAP audio tower from %s", latest)
            tok = source / TOKENIZER_DIR
            return model.eval(), tok if tok.is_dir() else None
    model = load_model(
        str(source) if source.exists() else str(cfg.clap), checkpoint=cfg.clap_checkpoint, download=False
    )
    tok = source / TOKENIZER_DIR
    return model, tok if tok.is_dir() else None


def build_caption_model(cfg: CaptionTrainConfig) -> tuple[Any, CaptionTokenizer]:
    """The caption model to train and its tokenizer (from ``clap`` or from ``init``)."""
    if cfg.init is not None:
        ccfg = resolve_caption_config(cfg.init)
        model = load_caption_model(cfg.init, checkpoint=cfg.init_checkpoint)
        tok_dir = cfg.tokenizer or (
            Path(cfg.init) / TOKENIZER_DIR if (Path(cfg.init) / TOKENIZER_DIR).is_dir() else None
        )
        return model, CaptionTokenizer(ccfg.text, tok_dir)
    clap, clap_tok = _load_clap(cfg)
    tok_dir = cfg.tokenizer or clap_tok
    ct = clap.config.text
    text = TextConfig(
        encoder="gpt2",
        transformer={},  # filled below once the vocabulary size is known
        max_length=cfg.max_length,
        tokenizer=ct.tokenizer,
        text_suffix=ct.text_suffix or " <|endoftext|>",
        pad_token=ct.pad_token,
        padding="longest",
        truncation="keep_suffix",
    )
    tokenizer = CaptionTokenizer(replace(text, transformer={"n_embd": 8}), tok_dir)
    # the CLAP text tower's GPT-2 sizes (or small defaults), updated with `decoder` (e.g. dropout rates)
    base = (
        dict(ct.transformer)
        if ct.encoder == "gpt2"
        else {"n_embd": 128, "n_layer": 2, "n_head": 4, "n_positions": 64}
    )
    decoder = {**base, **cfg.decoder}
    decoder["vocab_size"] = max(int(decoder.get("vocab_size", 0)), tokenizer.vocab_size)
    ccfg = CaptionConfig(
        name=f"caption-{clap.config.name}",
        audio=clap.config.audio,
        embed_dim=clap.config.embed_dim,
        projection=clap.config.projection,
        projection_dropout=clap.config.projection_dropout,
        normalize_prefix=True,
        mapper=MapperConfig.from_dict(cfg.mapper),
        text=replace(text, transformer=decoder),
    )
    model = create_caption_model(ccfg, seed=cfg.seed)
    audio = {
        k: v for k, v in clap.state_dict().items() if k.startswith(("audio_encoder.", "audio_projection."))
    }
    model.load_state_dict(audio, strict=False)
    if cfg.decoder_init == "clap_text":
        if ct.encoder != "gpt2" or dict(ct.transformer) != {
            k: v for k, v in decoder.items() if k in ct.transformer
        }:
            raise TrainConfigError(
                "decoder_init: clap_text needs the CLAP text tower to be a GPT-2 of the decoder's sizes; "
                "leave `decoder` empty or set decoder_init: random"
            )
        text_sd = {
            "decoder.transformer." + k[len("text_encoder.model.") :]: v
            for k, v in clap.state_dict().items()
            if k.startswith("text_encoder.model.")
        }
        missing = {k for k in model.state_dict() if k.startswith("decoder.transformer.")} - set(text_sd)
        if missing:
            raise TrainConfigError(f"CLAP text tower lacks decoder tensors {sorted(missing)[:5]}")
        model.load_state_dict(text_sd, strict=False)
    return model, CaptionTokenizer(ccfg.text, tok_dir)


def load_reranker(cfg: CaptionTrainConfig) -> ClapReranker | None:
    """The CLAP reranker of a run: ``rerank_clap``, else the ``clap`` model the captioner is built on, else
    the ``clap/`` bundled with an ``init`` caption model directory (None when there is none)."""
    if cfg.rerank_clap is not None:
        source = replace(cfg, clap=cfg.rerank_clap, clap_checkpoint=None)
    elif cfg.clap is not None:
        source = cfg
    else:
        bundled = bundled_clap(cfg.init) if cfg.init is not None and Path(cfg.init).is_dir() else None
        if bundled is None:
            return None
        source = replace(cfg, clap=str(bundled), clap_checkpoint=None)
    clap, tok = _load_clap(source)
    return ClapReranker(ClapPipeline(clap, TextTokenizer(clap.config.text, tok)))


def set_trainable(model: torch.nn.Module, mode: str) -> list[torch.nn.Parameter]:
    """Freeze what ``mode`` keeps fixed; return the trainable parameters."""
    for name, p in model.named_parameters():
        if name.startswith("mapper."):
            p.requires_grad_(True)
        elif name.startswith("decoder."):
            p.requires_grad_(mode in ("decoder", "full"))
        else:
            p.requires_grad_(mode == "full")
    return [p for p in model.parameters() if p.requires_grad]


# ------------------------------------------------------------------------------------------- data
def _samples(specs: list[ManifestSpec]) -> list:
    out = []
    for spec in specs:
        out.extend(read_manifest(spec))
    return out


def _fingerprint(model, samples: list) -> str:
    """Identifies the audio tower weights and the sample list (an embedding cache is valid for both)."""
    h = hashlib.sha256()
    for s in samples:
        h.update(s.path.encode())
    h.update(
        state_dict_fingerprint(model.state_dict(), prefixes=("audio_encoder.", "audio_projection.")).encode()
    )
    return h.hexdigest()


def embed_samples(
    model, tokenizer: CaptionTokenizer, samples: list, cache: Path | None, progress: bool = False
) -> np.ndarray:
    """(N, D) deterministic CLAP audio embeddings of ``samples`` (cached in ``cache`` as .npy, reused only
    for the same audio tower weights and samples)."""
    key = _fingerprint(model, samples)
    meta = cache.with_suffix(".json") if cache is not None else None
    if (
        cache is not None
        and cache.is_file()
        and meta.is_file()
        and json.loads(meta.read_text()).get("key") == key
    ):
        return np.load(cache)
    pipe = ClapPipeline(model, tokenizer.text)  # CaptionModel has ClapModel's encode_audio
    arr = pipe.embed_audio([s.path for s in samples], batch_size=16, progress=progress)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npy")
        np.save(tmp, arr)
        tmp.replace(cache)
        meta.write_text(json.dumps({"key": key, "count": len(samples)}))
    return arr


@torch.no_grad()
def embed_crops(
    model, samples: list, crops: int, seed: int, cache: Path | None, batch: int = 32
) -> np.ndarray:
    """(crops, N, D) embeddings of seeded random crops (the trainer's crop rule) of every sample."""
    if crops <= 0:
        return np.zeros((0, len(samples), model.config.embed_dim), np.float32)
    key = _fingerprint(model, samples) + f":crops{crops}:seed{seed}"
    meta = cache.with_suffix(".json") if cache is not None else None
    if (
        cache is not None
        and cache.is_file()
        and meta.is_file()
        and json.loads(meta.read_text()).get("key") == key
    ):
        return np.load(cache)
    dataset = ManifestDataset(samples, model.config.audio, seed=seed)
    out = np.zeros((crops, len(samples), model.config.embed_dim), np.float32)
    model.eval()
    for k in range(crops):
        for start in range(0, len(samples), batch):
            idx = range(start, min(start + batch, len(samples)))
            waves = torch.stack([dataset[(k, i)]["waveform"] for i in idx])
            out[k, start : start + len(idx)] = model.encode_audio(waves).numpy()
        logger.info("embedded random crop set %d/%d", k + 1, crops)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npy")
        np.save(tmp, out)
        tmp.replace(cache)
        meta.write_text(json.dumps({"key": key}))
    return out


def nearest_neighbours(embeds: np.ndarray, k: int) -> np.ndarray | None:
    """(N, k) indices of each row's k most cosine-similar rows (itself first), or None for k = 0."""
    if k <= 0:
        return None
    e = embeds / np.linalg.norm(embeds, axis=1, keepdims=True)
    sims = e @ e.T
    np.fill_diagonal(sims, np.inf)  # the clip itself always comes first
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def _batch_indices(n: int, batch: int, seed: int, step: int) -> list[int]:
    """Indices of optimiser step ``step``: epoch permutations drawn from (seed, epoch) only."""
    per_epoch = max(1, n // batch)
    epoch, pos = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000003 + epoch)).tolist()
    return perm[pos * batch : (pos + 1) * batch]


@torch.no_grad()
def _val_loss(model, tokenizer: CaptionTokenizer, embeds: np.ndarray, captions: list[str]) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(captions), 64):
        tok = tokenizer(captions[i : i + 64])
        out = model(torch.from_numpy(embeds[i : i + 64]), tok["input_ids"], tok["attention_mask"])
        n = int(tok["attention_mask"].sum())
        total += float(out.loss) * n
        count += n
    return total / max(count, 1)


# --------------------------------------------------------------------------------------- training
CaptionTrainResult = RunResult  # the name callers of train_captioning() know


class CaptionTraining(Task):
    """Teacher-forced captioning: (cached) CLAP audio embedding -> mapper -> GPT-2 decoder, cross-entropy."""

    kind = "captioning"

    def __init__(self, config: CaptionTrainConfig, progress: bool = False) -> None:
        if not config.train_manifest:
            raise TrainConfigError(
                "train_manifest is empty; list at least one CSV/JSONL with path and caption columns"
            )
        self.config, self.progress = config, progress

    def build(self, run_dir: Path, info: DistInfo) -> None:
        cfg = self.config
        if info.enabled:
            raise TrainConfigError(
                "captioning trains in one process (its embedding caches are per run); run it without torchrun"
            )
        self.run_dir = run_dir
        self.model, self.tokenizer = build_caption_model(cfg)
        params = set_trainable(self.model, cfg.train)
        logger.info(
            "caption model %s: %.2fM trainable of %.2fM parameters (train: %s)",
            self.model.config.name,
            sum(p.numel() for p in params) / 1e6,
            sum(p.numel() for p in self.model.parameters()) / 1e6,
            cfg.train,
        )
        self.train = _samples(cfg.train_manifest)
        self.captions = [s.caption for s in self.train]
        self.val = _samples(cfg.val_manifest) if cfg.val_manifest else []
        self.frozen_audio = cfg.train != "full"
        self.train_embeds = self.val_embeds = self.neighbours = None
        self.crop_embeds = np.zeros((0,), np.float32)
        emb = run_dir / "embeddings"
        if self.frozen_audio:  # the audio tower never changes: embed every clip once, cache in the run
            self.train_embeds = embed_samples(
                self.model, self.tokenizer, self.train, emb / "train.npy", self.progress
            )
            self.crop_embeds = embed_crops(
                self.model, self.train, cfg.train_crops, cfg.seed, emb / "train_crops.npy"
            )
            self.neighbours = nearest_neighbours(self.train_embeds, cfg.neighbour_captions)
            if self.val:
                self.val_embeds = embed_samples(
                    self.model, self.tokenizer, self.val, emb / "val.npy", self.progress
                )
        else:
            self.dataset = ManifestDataset(self.train, self.model.config.audio, seed=cfg.seed)

    def _step_batch(self, step: int) -> dict[str, Any]:
        """The whole batch of optimiser step ``step``: every random draw keyed by (seed, step)."""
        cfg, n = self.config, len(self.train)
        idx = _batch_indices(n, cfg.batch_size, cfg.seed, step)
        batch: dict[str, Any] = {}
        if self.frozen_audio:
            embeds = torch.from_numpy(self.train_embeds[idx])
            if len(self.crop_embeds):  # each row: the deterministic embedding or one of its random crops
                gen = torch.Generator().manual_seed(sample_seed(cfg.seed, step, 1))
                pick = torch.randint(0, len(self.crop_embeds) + 1, (len(idx),), generator=gen).tolist()
                rows = [
                    self.train_embeds[i] if c == 0 else self.crop_embeds[c - 1, i] for i, c in zip(idx, pick)
                ]
                embeds = torch.from_numpy(np.stack(rows))
            batch["embeds"] = embeds
        else:
            epoch = step // max(1, n // cfg.batch_size)
            batch["waveform"] = torch.stack([self.dataset[(epoch, i)]["waveform"] for i in idx])
        if cfg.embed_noise > 0:
            gen = torch.Generator().manual_seed(sample_seed(cfg.seed, step, 0))
            shape = (len(idx), self.model.config.embed_dim)
            batch["noise"] = cfg.embed_noise * torch.randn(shape, generator=gen)
        targets = list(idx)
        if self.neighbours is not None:  # some rows learn a neighbour's caption
            gen = torch.Generator().manual_seed(sample_seed(cfg.seed, step, 2))
            use = (torch.rand(len(idx), generator=gen) < cfg.neighbour_prob).tolist()
            pick = torch.randint(0, self.neighbours.shape[1], (len(idx),), generator=gen).tolist()
            targets = [int(self.neighbours[i, p]) if u else i for i, u, p in zip(idx, use, pick)]
        batch.update(self.tokenizer([self.captions[i] for i in targets]))
        return batch

    def batches(self, start_step: int, info: DistInfo, device: torch.device) -> Iterator[dict[str, Any]]:
        accum = self.config.grad_accum
        step = start_step
        while True:
            whole = self._step_batch(step)
            rows = len(whole["input_ids"])
            chunk = rows // accum
            for a in range(accum):
                yield {k: v[a * chunk : (a + 1) * chunk] for k, v in whole.items()}
            step += 1

    def training_forward(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        if "embeds" in batch:
            embeds = batch["embeds"].to(device)
        else:
            embeds = self.model.encode_audio(batch["waveform"].to(device))
        if "noise" in batch:
            embeds = embeds + batch["noise"].to(device)
        out = self.train_module(embeds, batch["input_ids"].to(device), batch["attention_mask"].to(device))
        return {"caption": out.loss}

    def train_mode(self, model: torch.nn.Module) -> None:
        if self.frozen_audio:
            model.audio_encoder.eval()
            model.audio_projection.eval()

    def evaluate(self, device: torch.device) -> dict[str, float]:
        if self.val_embeds is None:
            return {}
        return {
            "val_loss": _val_loss(self.model, self.tokenizer, self.val_embeds, [s.caption for s in self.val])
        }

    def model_config(self) -> dict[str, Any]:
        return self.model.config.to_dict()

    def describe(self, total_steps: int) -> str:
        return f"captioning {self.model.config.name} ({self.config.train}): {total_steps} steps"

    def export(self, final_dir: Path, last: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        cfg, model = self.config, self.model
        model.eval()
        pipeline = CaptionPipeline(model, self.tokenizer)
        final = pipeline.save_pretrained(final_dir)
        reranker = (
            load_reranker(cfg) if self.frozen_audio else None
        )  # a trained audio tower has no CLAP text tower
        if reranker is not None:  # beside the captioner: `openclap caption --rerank clap` finds it there
            reranker.check_audio_tower(model)
            reranker.clap.save_pretrained(final / CLAP_SUBDIR)
        evaluation: dict[str, Any] = {}
        if cfg.test_manifest or (cfg.val_manifest and cfg.decoding_candidates):
            evaluation = evaluate_run(
                pipeline, cfg, self.train, self.train_embeds, self.run_dir, reranker, self.progress
            )
        return final, evaluation


def train_captioning(
    cfg: CaptionTrainConfig, run_dir: str | Path, resume: str | None = None, progress: bool = False
) -> RunResult:
    """Run (or resume) a captioning training; returns where the final model and the evaluation went."""
    return engine.run(CaptionTraining(cfg, progress), run_dir, resume)


def _scores_by_set(
    specs: list[ManifestSpec], parts: list[list], captions: list[str], refs: list[list[str]]
) -> dict[str, float]:
    out, start = {}, 0
    for spec, part in zip(specs, parts):
        sl = slice(start, start + len(part))
        start += len(part)
        out[spec.display_name] = score_captions(captions[sl], refs[sl]).cider_d
    return out


def decode_settings(
    pipeline: CaptionPipeline,
    embeds: np.ndarray,
    settings: list[dict[str, Any]],
    reranker: ClapReranker | None,
) -> list[list[str]]:
    """The best caption of every row for each decoding setting (``split_decoding``); settings that differ
    only in reranking share one search."""
    searched: dict[GenerationConfig, list] = {}
    out = []
    for setting in settings:
        gen, rerank, lm_weight = split_decoding(setting)
        gen = pipeline.generation_config(
            **{f.name: getattr(gen, f.name) for f in fields(gen) if f.name in setting}
        )
        if gen not in searched:
            searched[gen] = pipeline.caption_embeddings(embeds, gen)
        hyps = searched[gen]
        if rerank:
            if reranker is None:
                raise TrainConfigError(
                    f"decoding {setting} reranks by CLAP but the run has no CLAP model "
                    "(a full-mode run trains its audio tower; set rerank_clap or drop rerank)"
                )
            hyps = ClapReranker(reranker.clap, lm_weight).rerank(embeds, hyps)
        out.append([row[0][0] for row in hyps])
    return out


def choose_decoding(
    pipeline: CaptionPipeline,
    cfg: CaptionTrainConfig,
    train: list,
    train_embeds: np.ndarray,
    cache: Path | None,
    reranker: ClapReranker | None,
    progress: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score every ``decoding_candidates`` setting on the validation split (CIDEr-D of all validation clips
    pooled) and return the best with the table (the nearest-caption baseline on validation included)."""
    parts = [read_manifest(spec) for spec in cfg.val_manifest]
    val = [s for part in parts for s in part]
    logger.info(
        "choosing the decoding on %d validation clips: %d candidate setting(s), each decodes every clip",
        len(val),
        len(cfg.decoding_candidates),
    )
    val_embeds = embed_samples(
        pipeline.model, pipeline.tokenizer, val, cache / "val.npy" if cache else None, progress
    )
    refs = [[s.caption] for s in val]

    def scored(captions: list[str]) -> dict[str, Any]:
        return {
            "cider_d": score_captions(captions, refs).cider_d,
            "per_set": _scores_by_set(cfg.val_manifest, parts, captions, refs),
        }

    rows = []
    for d, captions in zip(
        cfg.decoding_candidates, decode_settings(pipeline, val_embeds, cfg.decoding_candidates, reranker)
    ):
        rows.append({"decoding": d, **scored(captions)})
        logger.info("validation CIDEr-D %.3f with %s", rows[-1]["cider_d"], d)
    best = max(range(len(rows)), key=lambda i: (rows[i]["cider_d"], -i))
    baseline = nearest_caption_baseline(train_embeds, [s.caption for s in train], val_embeds)
    table = {
        "val_clips": len(val),
        "chosen_on": "cider_d",
        "candidates": rows,
        "chosen": cfg.decoding_candidates[best],
        "nearest_caption_baseline": scored(baseline),
    }
    return cfg.decoding_candidates[best], table


def evaluate_run(
    pipeline: CaptionPipeline,
    cfg: CaptionTrainConfig,
    train: list,
    train_embeds: np.ndarray | None,
    run: Path,
    reranker: ClapReranker | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Choose the decoding on the validation split (``decoding_candidates``), then caption the test clips
    once with it; score them and the nearest-caption baseline; write ``eval.json``."""
    cache = None if cfg.train == "full" else run / "embeddings"  # a trained audio tower changes embeddings
    if train_embeds is None:
        train_embeds = embed_samples(pipeline.model, pipeline.tokenizer, train, None, progress)
    setting = {"beam_size": cfg.beam_size, **cfg.decoding}
    validation = None
    if cfg.val_manifest and cfg.decoding_candidates:
        setting, validation = choose_decoding(pipeline, cfg, train, train_embeds, cache, reranker, progress)
        logger.info("decoding chosen on validation: %s", validation["chosen"])
    if not cfg.test_manifest:
        out = {"validation": validation}
        (run / "eval.json").write_text(json.dumps(out, indent=1))
        return out
    parts = [read_manifest(spec) for spec in cfg.test_manifest]
    test = [s for part in parts for s in part]
    test_embeds = embed_samples(
        pipeline.model, pipeline.tokenizer, test, cache / "test.npy" if cache else None, progress
    )
    refs = [[s.caption] for s in test]
    started = time.time()
    generated = decode_settings(pipeline, test_embeds, [setting], reranker)[0]
    decode_s = time.time() - started
    model_report = report_from_captions([s.path for s in test], generated, refs)
    baseline = nearest_caption_baseline(train_embeds, [s.caption for s in train], test_embeds)
    base_report = report_from_captions([s.path for s in test], baseline, refs)
    per_set = {}
    start = 0
    for spec, part in zip(cfg.test_manifest, parts):
        sl = slice(start, start + len(part))
        start += len(part)
        paths = [s.path for s in part]
        per_set[spec.display_name] = {
            "clips": len(part),
            "model_cider_d": report_from_captions(paths, generated[sl], refs[sl]).scores.cider_d,
            "baseline_cider_d": report_from_captions(paths, baseline[sl], refs[sl]).scores.cider_d,
        }
    diff = np.array(
        [m["cider_d"] - b["cider_d"] for m, b in zip(model_report.captions, base_report.captions)]
    )
    out = {
        "test_clips": len(test),
        "decoding": setting,
        "decode_seconds": round(decode_s, 1),
        "validation": validation,
        "model": model_report.scores.as_dict(),
        "nearest_caption_baseline": base_report.scores.as_dict(),
        "per_set": per_set,
        # model minus baseline, clip by clip (single reference): is the gap larger than its noise?
        "paired_difference": {
            "cider_d_mean": float(diff.mean()),
            "standard_error": float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else None,
            "model_better_clips": int((diff > 0).sum()),
            "baseline_better_clips": int((diff < 0).sum()),
        },
        "examples": [
            {"path": s.path, "reference": s.caption, "generated": g, "nearest_caption": b}
            for s, g, b in list(zip(test, generated, baseline))[:: max(1, len(test) // 24)]
        ],
        "captions": model_report.captions,
        "notes": model_report.notes,
    }
    (run / "eval.json").write_text(json.dumps(out, indent=1))
    logger.info(
        "test CIDEr-D %.3f (nearest-caption baseline %.3f), BLEU-4 %.3f (%.3f), ROUGE-L %.3f (%.3f)",
        model_report.scores.cider_d,
        base_report.scores.cider_d,
        model_report.scores.bleu_4,
        base_report.scores.bleu_4,
        model_report.scores.rouge_l,
        base_report.scores.rouge_l,
    )
    return out


def evaluate_saved_run(
    cfg: CaptionTrainConfig, run_dir: str | Path, progress: bool = False
) -> dict[str, Any]:
    """``evaluate_run`` for a finished run (its ``final/`` model, cached training embeddings), with the
    decoding settings of ``cfg`` (``--eval-only``)."""
    from openclap.caption.pipeline import load_captioner

    run = Path(run_dir)
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    pipeline = load_captioner(run / "final")
    bundled = bundled_clap(run / "final")
    reranker = (
        ClapReranker.load(bundled) if bundled is not None and cfg.rerank_clap is None else load_reranker(cfg)
    )
    if reranker is not None:
        reranker.check_audio_tower(pipeline.model)
    train = _samples(cfg.train_manifest)
    cache = None if cfg.train == "full" else run / "embeddings" / "train.npy"
    train_embeds = embed_samples(pipeline.model, pipeline.tokenizer, train, cache, progress)
    return evaluate_run(pipeline, cfg, train, train_embeds, run, reranker, progress)


def is_captioning_config(path: str | Path) -> bool:
    """True when the YAML recipe at ``path`` says ``task: captioning`` (for `openclap train` to dispatch)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        return False
    data = yaml.safe_load(p.read_text(encoding="utf-8"))
    return isinstance(data, dict) and data.get("task") == "captioning"


def run_from_args(args: argparse.Namespace) -> int:
    """Run from `openclap train`'s arguments (config, run_dir, resume, max_steps, seed, overrides)."""
    import yaml

    from openclap_train.config import apply_overrides

    data = yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) or {}
    data = apply_overrides(data, list(getattr(args, "overrides", None) or []))
    for key in ("max_steps", "seed"):
        if getattr(args, key, None) is not None:
            data[key] = getattr(args, key)
    cfg = build(CaptionTrainConfig, data, where=str(args.config))
    progress = bool(getattr(args, "progress", None))  # off unless asked for (`openclap train` has no flag)
    if getattr(args, "eval_only", False):
        ev = evaluate_saved_run(cfg, args.run_dir, progress=progress)
        if ev.get("validation"):
            print(f"decoding chosen on validation: {ev['validation']['chosen']}")
        if "model" in ev:
            m, b = ev["model"], ev["nearest_caption_baseline"]
            print(f"test CIDEr-D {m['cider_d']:.3f} vs nearest-caption baseline {b['cider_d']:.3f}")
        return 0
    result = train_captioning(cfg, args.run_dir, resume=args.resume, progress=progress)
    if result.eval.get("validation"):
        print(f"decoding chosen on validation: {result.eval['validation']['chosen']}")
    if "model" in result.eval:
        m, b = result.eval["model"], result.eval["nearest_caption_baseline"]
        print(f"test CIDEr-D {m['cider_d']:.3f} vs nearest-caption baseline {b['cider_d']:.3f}")
    print(f"final model: {result.final_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m openclap_train.captioning CONFIG --run-dir DIR [--resume latest]``."""
    from openclap.cli import add_progress_argument, add_recipe_arguments

    parser = argparse.ArgumentParser(
        prog="python -m openclap_train.captioning", description=__doc__.split("\n")[0]
    )
    add_recipe_arguments(parser, example="configs/caption-small-shared-data.yaml (task: captioning)")
    add_progress_argument(parser)  # --progress / --no-progress, as every openclap command
    parser.add_argument(
        "--eval-only",
        action="store_true",
        help="no training: evaluate the run's final/ model (validation choice of decoding, then test)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        if not Path(args.config).is_file():
            raise FileNotFoundError(
                f"captioning config {args.config} not found; see configs/caption-small-shared-data.yaml"
            )
        return run_from_args(args)
    except (TrainConfigError, FileNotFoundError) as exc:  # one line saying what to do, not a traceback
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
