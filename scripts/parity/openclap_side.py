"""openclap side of the parity checks; runs in the project venv.

    python openclap_side.py prepare FAMILY --out WORKDIR   # clips.npz, texts.json, tokenizer/ for FAMILY
    python openclap_side.py check FAMILY --out WORKDIR     # load the reference checkpoint, compare

``prepare`` builds real test inputs: mono clips from ../shared/data (ESC-10 recordings, FluidR3 instrument
notes, FSDD digits), decoded and resampled by openclap's loader to the family's rate and concatenated /
looped to exactly the family's clip length (so no reference crops or pads), a few texts, and the tokenizer
files both sides read (GPT-2: the bundled BPE; BERT / RoBERTa: small files in the same formats, since the
real vocabularies are not available offline).

``check`` loads the checkpoint the reference wrote with ``openclap.load(preset, checkpoint=...)`` and prints
min cosine / max abs difference of the L2-normalised audio and text embeddings; exit 1 beyond tolerance.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
from pathlib import Path

import numpy as np

MIN_COS, MAX_ABS = 0.99999, 1e-4
REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"

FAMILIES = {  # family -> (openclap preset, sample rate, seconds, tokenizer kind)
    "msclap-2023": ("msclap-2023", 44100, 7.0, "gpt2"),
    "msclap-2022": ("msclap-2022", 44100, 5.0, "bert"),
    "laion": ("laion-htsat-tiny-roberta", 48000, 10.0, "roberta"),
    "laion-fusion": ("laion-htsat-tiny-roberta-fusion", 48000, 10.0, "roberta"),
}
TEXTS = [
    "a dog barks",
    "rain falling on a tin roof",
    "wow!! a rooster crows at dawn",
    "the sound of a bowed violin note, high and quiet",
    "a man says the number seven",
]


def _clip_sources() -> list[list[Path]]:
    """Six groups of real recordings; each group is concatenated (and looped) into one clip."""
    esc = sorted((DATA / "esc10" / "audio").glob("*.flac"))
    ins = sorted((DATA / "instruments" / "audio").rglob("*.flac"))
    fsdd = sorted((DATA / "fsdd" / "audio").glob("*.flac"))
    if not (esc and ins and fsdd):
        sys.exit(f"real audio not found under {DATA}")
    return [esc[0:2], esc[100:102], ins[0:3], ins[300:304], fsdd[0:6], fsdd[1000:1003]]


def prepare(family: str, out: Path) -> None:
    from openclap.audio.io import load_audio
    from openclap.text.tokenizer import bundled_tokenizer_dir

    _, rate, seconds, tok = FAMILIES[family]
    n = round(rate * seconds)
    waves = []
    for group in _clip_sources():
        joined = np.concatenate([load_audio(str(p), rate) for p in group])
        reps = int(np.ceil(n / len(joined)))
        waves.append(np.tile(joined, reps)[:n])
    out.mkdir(parents=True, exist_ok=True)
    extra = {}
    if family.startswith("laion"):  # shorter clips too: both sides fill them ("repeatpad")
        notes = sorted((DATA / "instruments" / "audio").rglob("*.flac"))[::150][:3]
        extra["short"] = np.stack([load_audio(str(p), rate)[: 3 * rate] for p in notes]).astype(np.float32)
    np.savez(out / "clips.npz", waves=np.stack(waves).astype(np.float32), **extra)
    (out / "texts.json").write_text(json.dumps(TEXTS))
    tok_dir = out / "tokenizer"
    tok_dir.mkdir(exist_ok=True)
    src = bundled_tokenizer_dir("gpt2")
    if tok == "gpt2":
        for name in ("vocab.json", "merges.txt"):
            (tok_dir / name).write_bytes((src / name).read_bytes())
    elif tok == "roberta":  # RoBERTa layout from the GPT-2 BPE: <s>=0 <pad>=1 </s>=2 <unk>=3, GPT-2 ids + 4
        vocab = json.loads((src / "vocab.json").read_text(encoding="utf-8"))
        rv = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        rv.update({t: i + 4 for t, i in vocab.items() if t != "<|endoftext|>"})
        rv["<mask>"] = len(rv)
        (tok_dir / "vocab.json").write_text(json.dumps(rv), encoding="utf-8")
        (tok_dir / "merges.txt").write_bytes((src / "merges.txt").read_bytes())
    else:  # BERT WordPiece layout: [PAD]=0, [unused*], [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103
        lines = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        chars = list(string.ascii_lowercase + string.digits + string.punctuation)
        words = sorted({w.strip(string.punctuation) for t in TEXTS for w in t.lower().split()} - {""})
        lines += chars + ["##" + c for c in string.ascii_lowercase] + words
        (tok_dir / "vocab.txt").write_text("\n".join(lines) + "\n")
        (tok_dir / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    print(f"{family}: {len(waves)} clips of {seconds:g} s at {rate} Hz, {len(TEXTS)} texts -> {out}")


def _compare(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    ref = ref / np.linalg.norm(ref, axis=-1, keepdims=True)
    ours = ours / np.linalg.norm(ours, axis=-1, keepdims=True)
    return float((ours * ref).sum(-1).min()), float(np.abs(ours - ref).max())


def check(family: str, out: Path) -> int:
    import torch

    import openclap

    preset = FAMILIES[family][0]
    ref = np.load(out / "reference.npz")
    ckpt = out / json.loads((out / "reference.json").read_text())["checkpoint"]
    pipe = openclap.load(preset, checkpoint=ckpt, tokenizer=out / "tokenizer")
    clips = np.load(out / "clips.npz")["waves"]
    texts = json.loads((out / "texts.json").read_text())
    with torch.no_grad():
        audio = pipe.embed_audio([c for c in clips], sample_rate=pipe.model.config.audio.sample_rate)
        text = pipe.embed_text(texts)
    tokens = pipe.tokenizer(texts)
    # Same ids on the attended positions (the padded length may differ: msclap pads every text to 77).
    ids, mask = tokens["input_ids"].numpy(), tokens["attention_mask"].numpy()
    same_ids = all(
        np.array_equal(ids[i][mask[i] == 1], ref["input_ids"][i][ref["attention_mask"][i] == 1])
        for i in range(len(texts))
    )
    clip_data = np.load(out / "clips.npz")
    if "short" in clip_data:  # padded by the preset's pad_mode vs the reference's own filling
        short = pipe.embed_audio(
            [c for c in clip_data["short"]], sample_rate=pipe.model.config.audio.sample_rate
        )
        audio = np.concatenate([np.asarray(audio), short])
    a_cos, a_diff = _compare(np.asarray(audio), ref["audio"])
    t_cos, t_diff = _compare(np.asarray(text), ref["text"])
    ok = a_cos >= MIN_COS and t_cos >= MIN_COS and a_diff <= MAX_ABS and t_diff <= MAX_ABS and same_ids
    result = {
        "family": family, "preset": preset, "clips": len(audio), "texts": len(texts),
        "audio_min_cosine": a_cos, "audio_max_abs_diff": a_diff,
        "text_min_cosine": t_cos, "text_max_abs_diff": t_diff,
        "token_ids_equal": bool(same_ids), "ok": bool(ok),
    }  # fmt: skip
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(
        f"{family:<13} audio: min cos {a_cos:.8f} max abs {a_diff:.2e} | text: min cos {t_cos:.8f} "
        f"max abs {t_diff:.2e} | token ids equal: {same_ids} -> {'OK' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=("prepare", "check"))
    p.add_argument("family", choices=sorted(FAMILIES))
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args()
    if a.step == "prepare":
        prepare(a.family, a.out)
        return 0
    return check(a.family, a.out)


if __name__ == "__main__":
    sys.exit(main())
