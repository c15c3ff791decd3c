"""Train openclap-mini (the bundled small CLAP) from configs/openclap-mini.yaml on 2 CPU cores.

    python scripts/train_openclap_mini.py configs/openclap-mini.yaml --run-dir runs/openclap-mini

Composed from openclap's own parts (ClapConfig/create_model, LogMelFrontend, load_audio, TextTokenizer,
openclap_train's BPE trainer); what it adds over ``openclap train`` for this tiny, templated data:

* log-mel spectrograms are computed once per clip and cached (random 2 s crops, gain, SpecAugment are
  applied on the cached log-mel), which is what makes ~1000 steps fit in an hour on 2 cores;
* captions are redrawn each time from the clip's class (any train caption of the same digit/class, the
  bare class name, or for instruments a family caption), so the text tower sees every phrasing;
* the contrastive loss treats every pair of the same class as a positive (multi-positive InfoNCE), not
  as a false negative: a batch of 64 holds ~6 clips of each digit;
* batches mix the three sets in fixed shares (ESC-10 is small but the hardest target).

Writes ``run-dir/final`` (``openclap.load`` reads it), ``metrics.jsonl``, ``val.json`` (validation
zero-shot accuracy for every template) and ``templates.json`` (the best template per set on validation).
The test splits are never read.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from openclap.audio.io import load_audio
from openclap.audio.windows import fit_to_length
from openclap.config import ClapConfig
from openclap.factory import create_model, save_model_dir
from openclap.text.tokenizer import TextTokenizer
from openclap_train.tokenizer_train import train_bpe

logger = logging.getLogger("train_openclap_mini")

FAMILY_CAPTIONS = ("a note played on a {} instrument", "the sound of a {} instrument", "a {} instrument", "{}")


def clean(name: str) -> str:
    """Class name as the evaluation prompts write it (underscores to spaces, lower case)."""
    return name.replace("_", " ").strip().lower()


@dataclass
class Clip:
    """One training or validation clip: cached log-mel, its own caption, class key(s)."""

    path: str
    dataset: str
    label: str  # clean class name
    caption: str
    family: str | None = None
    mel: torch.Tensor | None = None  # (frames, n_mels)
    keys: tuple[str, ...] = field(default_factory=tuple)


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV manifest, paths made absolute."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["path"] = str(path.parent / row["path"])
    return rows


def split_data(cfg: dict) -> tuple[list[Clip], list[Clip]]:
    """Train and validation clips from the train splits (test rows are dropped here, never read)."""
    root = Path(cfg["root"])
    train: list[Clip] = []
    val: list[Clip] = []
    f = cfg["fsdd"]
    for r in read_rows(root / f["manifest"]):
        if r["split"] != "train":
            continue
        c = Clip(r["path"], "fsdd", clean(r["label"]), r["caption"])
        (val if r["speaker"] == f["val_speaker"] else train).append(c)
    e = cfg["esc10"]
    taken: dict[str, int] = {}
    for r in read_rows(root / e["manifest"]):
        if r["split"] != "train":
            continue
        c = Clip(r["path"], "esc10", clean(r["label"]), r["caption"])
        if r["fold"] == str(e["val_fold"]) and taken.get(c.label, 0) < e["val_per_class"]:
            taken[c.label] = taken.get(c.label, 0) + 1
            val.append(c)
        else:
            train.append(c)
    n = 0
    for r in read_rows(root / cfg["instruments"]["manifest"]):
        if r["split"] != "train":
            continue
        c = Clip(r["path"], "instruments", clean(r["label"]), r["caption"], family=clean(r["family"]))
        (val if n % cfg["instruments"]["val_every"] == 0 else train).append(c)
        n += 1
    for c in train + val:
        c.keys = (f"{c.dataset}:{c.label}",) + ((f"family:{c.family}",) if c.family else ())
    return train, val


def mel_of(model, path: str, num_samples: int) -> torch.Tensor:
    """Log-mel (frames, n_mels) of a whole clip, repeated up to the model's window if shorter."""
    cfg = model.config.audio
    wave = torch.from_numpy(load_audio(path, cfg.frontend.sample_rate))
    if wave.numel() < num_samples:
        wave = fit_to_length(wave, num_samples, cfg.pad_mode)
    with torch.no_grad():
        return model.audio_frontend(wave[None])[0]


def crop_frames(mel: torch.Tensor, frames: int, gen: random.Random) -> torch.Tensor:
    """A random window of ``frames`` frames."""
    extra = mel.shape[0] - frames
    start = gen.randint(0, extra) if extra > 0 else 0
    return mel[start : start + frames]


def augment(mel: torch.Tensor, aug: dict, gen: random.Random) -> torch.Tensor:
    """Gain (a dB offset) and SpecAugment time/frequency masks (filled with the clip's mean)."""
    mel = mel + gen.uniform(-aug["gain_db"], aug["gain_db"])
    fill = mel.mean()
    mel = mel.clone()
    for _ in range(aug["time_masks"]):
        w = gen.randint(0, aug["time_mask_frames"])
        s = gen.randint(0, max(0, mel.shape[0] - w))
        mel[s : s + w] = fill
    for _ in range(aug["freq_masks"]):
        w = gen.randint(0, aug["freq_mask_bins"])
        s = gen.randint(0, max(0, mel.shape[1] - w))
        mel[:, s : s + w] = fill
    return mel


def lr_at(step: int, o: dict) -> float:
    """Linear warmup, then cosine down to min_lr_ratio * lr."""
    if step < o["warmup_steps"]:
        return o["lr"] * (step + 1) / o["warmup_steps"]
    t = (step - o["warmup_steps"]) / max(1, o["steps"] - o["warmup_steps"])
    floor = o["min_lr_ratio"]
    return o["lr"] * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def multi_positive_loss(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where every same-class pair counts as a positive (targets uniform over them)."""
    target_a = positive / positive.sum(1, keepdim=True)
    target_t = positive.T / positive.T.sum(1, keepdim=True)
    loss_a = -(target_a * F.log_softmax(logits, 1)).sum(1).mean()
    loss_t = -(target_t * F.log_softmax(logits.T, 1)).sum(1).mean()
    return 0.5 * (loss_a + loss_t)


def window_embeddings(model, mel: torch.Tensor, frames: int) -> torch.Tensor:
    """Embedding of a whole clip like the pipeline: mean of 50 %-overlap windows, renormalised."""
    hop = frames // 2
    starts = list(range(0, max(1, mel.shape[0] - frames + 1), hop))
    if mel.shape[0] > frames and starts[-1] + frames < mel.shape[0]:
        starts.append(mel.shape[0] - frames)
    windows = torch.stack([mel[s : s + frames] for s in starts])
    emb = model.audio_projection(model.audio_encoder(windows).features)
    return F.normalize(F.normalize(emb, dim=-1).mean(0), dim=-1)


@torch.no_grad()
def validate(model, tokenizer, val: list[Clip], frames: int, templates: dict) -> dict[str, float]:
    """Zero-shot accuracy on the validation clips for every template of every set."""
    model.eval()
    out: dict[str, float] = {}
    audio = {id(c): window_embeddings(model, c.mel, frames) for c in val}
    groups = {
        "fsdd": ([c for c in val if c.dataset == "fsdd"], lambda c: c.label),
        "esc10": ([c for c in val if c.dataset == "esc10"], lambda c: c.label),
        "instruments": ([c for c in val if c.dataset == "instruments"], lambda c: c.label),
        "family": ([c for c in val if c.dataset == "instruments"], lambda c: c.family),
    }
    for name, (clips, key) in groups.items():
        classes = sorted({key(c) for c in clips})
        a = torch.stack([audio[id(c)] for c in clips])
        y = torch.tensor([classes.index(key(c)) for c in clips])
        for t in templates[name]:
            tok = tokenizer([t.format(k) for k in classes])
            text = model.encode_text(tok["input_ids"], tok["attention_mask"])
            out[f"{name}[{t}]"] = float(((a @ text.T).argmax(1) == y).float().mean())
    model.train()
    return out


def main(argv: list[str] | None = None) -> int:
    """Train, validate, save ``run-dir/final``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--steps", type=int, default=None, help="override optim.steps (pilots)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    cfg = yaml.safe_load(Path(args.config).read_text())
    o = dict(cfg["optim"])
    if args.steps:
        o["steps"] = args.steps
    run = Path(args.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg["num_threads"])
    torch.manual_seed(cfg["seed"])
    gen = random.Random(cfg["seed"])
    t0 = time.time()

    d = cfg["data"]
    train, val = split_data(d)
    by_class: dict[str, list[str]] = {}
    for c in train:
        if c.dataset != "instruments":  # instrument captions also name pitch/loudness: keep each clip's own
            by_class.setdefault(c.keys[0], []).append(c.caption)
    by_class = {k: sorted(set(v)) for k, v in by_class.items()}
    families = sorted({c.family for c in train if c.family})
    extra = [c.label for c in train] + [t.format(f) for f in families for t in FAMILY_CAPTIONS]
    tok_dir = run / "tokenizer"
    train_bpe([c.caption for c in train] + extra, tok_dir, vocab_size=cfg["tokenizer_vocab_size"])

    mc = json.loads(json.dumps(cfg["model"]))
    mc["text"]["tokenizer"] = "tokenizer"  # the model directory's own tokenizer/ folder
    probe = TextTokenizer(ClapConfig.from_dict(mc).text, tok_dir)
    mc["text"]["transformer"]["vocab_size"] = probe.vocab_size
    eos = probe.token_to_id("<|endoftext|>")
    mc["text"]["transformer"].update(bos_token_id=eos, eos_token_id=eos)
    class_keys = sorted({c.keys[0] for c in train})  # auxiliary classifier targets (the encoder's own head)
    mc["audio"]["cnn14"]["num_classes"] = len(class_keys)
    config = ClapConfig.from_dict(mc)
    tokenizer = TextTokenizer(config.text, tok_dir)
    model = create_model(config, seed=cfg["seed"])
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("model: %.2f M parameters; %d train / %d val clips", n_params / 1e6, len(train), len(val))

    num_samples = round(config.audio.duration * config.audio.frontend.sample_rate)
    frames = model.audio_frontend.num_frames(num_samples)
    for c in train + val:
        c.mel = mel_of(model, c.path, num_samples)
    logger.info("cached log-mels in %.0f s (%d frames per window)", time.time() - t0, frames)

    pools = {k: [c for c in train if c.dataset == k] for k in ("fsdd", "esc10", "instruments")}
    shares = d["mix"]
    counts = {k: round(o["batch_size"] * shares[k]) for k in pools}
    counts["fsdd"] += o["batch_size"] - sum(counts.values())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name == "logit_scale" else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=o["lr"])
    metrics = (run / "metrics.jsonl").open("w")
    model.train()
    val_log: dict[int, dict[str, float]] = {}
    t_train = time.time()
    for step in range(o["steps"]):
        if o["single_dataset_batches"]:  # one set per batch: negatives are other classes of the same set
            k = gen.choices(list(pools), weights=[shares[k] for k in pools])[0]
            batch = [gen.choice(pools[k]) for _ in range(o["batch_size"])]
        else:
            batch = []
            for k, n in counts.items():
                batch += [gen.choice(pools[k]) for _ in range(n)]
        mels, captions, text_keys = [], [], []
        for c in batch:
            mels.append(augment(crop_frames(c.mel, frames, gen), cfg["augment"], gen))
            r = gen.random()
            if c.family and r < d["family_caption_prob"]:
                captions.append(gen.choice(FAMILY_CAPTIONS).format(c.family))
                text_keys.append(f"family:{c.family}")
                continue
            if r > 1 - d["label_caption_prob"]:
                captions.append(c.label)
            elif c.dataset == "instruments":
                captions.append(c.caption)
            else:
                captions.append(gen.choice(by_class[c.keys[0]]))
            text_keys.append(c.keys[0])
        positive = torch.tensor([[tk in c.keys for tk in text_keys] for c in batch], dtype=torch.float32)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, o)
        tok = tokenizer(captions)
        enc = model.audio_encoder(torch.stack(mels))
        audio = F.normalize(model.audio_projection(enc.features), dim=-1)
        text = model.encode_text(tok["input_ids"], tok["attention_mask"])
        loss = multi_positive_loss(model.scale() * audio @ text.T, positive)
        if o["aux_ce_weight"] > 0:  # supervised class head on the audio tower: speeds up learning a lot
            target = torch.tensor([class_keys.index(c.keys[0]) for c in batch])
            loss = loss + o["aux_ce_weight"] * F.cross_entropy(enc.clipwise_logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o["grad_clip"])
        opt.step()
        if step % 10 == 0 or step == o["steps"] - 1:
            rec = {"step": step, "loss": float(loss.detach()), "lr": lr_at(step, o), "scale": float(model.scale().detach()),
                   "elapsed_s": round(time.time() - t0, 1)}
            metrics.write(json.dumps(rec) + "\n")
            metrics.flush()
            logger.info("step %d loss %.3f lr %.2e scale %.1f (%.2f s/step)", step, rec["loss"], rec["lr"],
                        rec["scale"], (time.time() - t_train) / (step + 1))
        if (step + 1) % o["eval_every"] == 0 or step == o["steps"] - 1:
            res = validate(model, tokenizer, val, frames, cfg["templates"])
            val_log[step + 1] = res
            metrics.write(json.dumps({"step": step + 1, **{f"val/{k}": v for k, v in res.items()}}) + "\n")
            metrics.flush()
            best = {g: max((v, k) for k, v in res.items() if k.startswith(g + "[")) for g in cfg["templates"]}
            logger.info("val at %d: %s", step + 1, {g: f"{v:.3f} {k}" for g, (v, k) in best.items()})
            snap = save_model_dir(model, run / "latest")  # a loadable snapshot at every evaluation
            tokenizer.save_pretrained(snap / "tokenizer")
    model.eval()
    final = save_model_dir(model, run / "final")
    tokenizer.save_pretrained(final / "tokenizer")
    last = val_log[o["steps"]]
    chosen = {g: max((v, k) for k, v in last.items() if k.startswith(g + "["))[1][len(g) + 1 : -1]
              for g in cfg["templates"]}
    (run / "val.json").write_text(json.dumps(val_log, indent=2) + "\n")
    (run / "templates.json").write_text(json.dumps(chosen, indent=2) + "\n")
    logger.info("done in %.0f s (training %.0f s); model in %s; templates %s", time.time() - t0,
                time.time() - t_train, final, chosen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
