"""openclap side of the parity checks; runs in the project venv.

    python openclap_side.py prepare FAMILY --out WORKDIR   # clips.npz, texts.json, tokenizer/ for FAMILY
    python openclap_side.py check FAMILY --out WORKDIR     # load the reference checkpoint, compare

``prepare`` builds real test inputs: mono clips from the committed test corpus tests/data (ESC-10
recordings, FluidR3 instrument notes, FSDD digits), decoded and resampled by openclap's loader to the family's rate and concatenated /
looped to exactly the family's clip length (so no reference crops or pads), a few texts, and the tokenizer
files both sides read (GPT-2: the bundled BPE; BERT / RoBERTa: small files in the same formats, since the
real vocabularies are not available offline).

``check`` loads the checkpoint the reference wrote with ``openclap.load(preset, checkpoint=...)`` and prints
min cosine / max abs difference of the L2-normalised audio and text embeddings; exit 1 beyond tolerance.

``fixture`` (after ``check``) writes the committed fixture ``tests/data/parity/FAMILY.{json,npz}``: the seed
and recipe that regenerate the reference checkpoint's state dict, its SHA-256, a description and hash of the
inputs, and the reference embeddings and token ids (see tests/test_parity_fixtures.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import string
import sys
from pathlib import Path

import numpy as np

MIN_COS, MAX_ABS = 0.99999, 1e-4
REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"  # the committed test corpus: the inputs exist on any clone
FIXTURES = DATA / "parity"

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
    return [esc[0:2], esc[20:22], ins[0:3], ins[20:24], fsdd[0:6], fsdd[150:153]]


def make_inputs(family: str) -> tuple[dict[str, np.ndarray], dict]:
    """The family's input waveforms (``waves``, and ``short`` for LAION) and their description."""
    from openclap.audio.io import load_audio

    _, rate, seconds, _ = FAMILIES[family]
    n = round(rate * seconds)
    groups = _clip_sources()
    waves = []
    for group in groups:
        joined = np.concatenate([load_audio(str(p), rate) for p in group])
        reps = int(np.ceil(n / len(joined)))
        waves.append(np.tile(joined, reps)[:n])
    arrays = {"waves": np.stack(waves).astype(np.float32)}
    names = {"waves": [[str(p.relative_to(DATA)) for p in g] for g in groups]}
    if family.startswith("laion"):  # shorter clips too: both sides fill them ("repeatpad")
        notes = sorted((DATA / "instruments" / "audio").rglob("*.flac"))[::10][:3]
        arrays["short"] = np.stack([load_audio(str(p), rate)[: 3 * rate] for p in notes]).astype(np.float32)
        names["short"] = [str(p.relative_to(DATA)) for p in notes]
    description = {
        "rate": rate, "seconds": seconds, "sources": names,
        "sha256": {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in arrays.items()},
        "how": "each group of tests/data clips decoded and resampled by openclap.audio.io.load_audio, "
               "concatenated and looped to the family's clip length; 'short': the first 3 s of single notes",
    }  # fmt: skip
    return arrays, description


def prepare(family: str, out: Path) -> None:
    """Write the inputs (clips.npz, texts.json) and the tokenizer files of one family into ``out``."""
    _, rate, seconds, tok = FAMILIES[family]
    out.mkdir(parents=True, exist_ok=True)
    arrays, _ = make_inputs(family)
    np.savez(out / "clips.npz", **arrays)
    (out / "texts.json").write_text(json.dumps(TEXTS))
    write_tokenizer(tok, out / "tokenizer")
    print(
        f"{family}: {len(arrays['waves'])} clips of {seconds:g} s at {rate} Hz, {len(TEXTS)} texts -> {out}"
    )


def write_tokenizer(tok: str, tok_dir: Path) -> None:
    """The tokenizer files both sides read: GPT-2 BPE, a RoBERTa layout of it, or a small BERT vocab."""
    from openclap.text.tokenizer import bundled_tokenizer_dir

    tok_dir.mkdir(parents=True, exist_ok=True)
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


def fixture(family: str, out: Path, dest: Path) -> None:
    """Write the committed fixture of one family from a finished ``prepare`` / reference / ``check`` run."""
    ref_meta = json.loads((out / "reference.json").read_text())
    ref = np.load(out / "reference.npz")
    constants = np.load(out / "state_constants.npz")
    result = json.loads((out / "result.json").read_text())
    if not result["ok"]:
        sys.exit(f"{family}: the parity check failed ({out / 'result.json'}); no fixture written")
    _, description = make_inputs(family)
    stored = {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in np.load(out / "clips.npz").items()}
    if stored != description["sha256"]:
        sys.exit(f"{family}: the inputs in {out / 'clips.npz'} are not the ones make_inputs builds now")
    dest.mkdir(parents=True, exist_ok=True)
    meta = {
        "family": family, "preset": FAMILIES[family][0], "tokenizer": FAMILIES[family][3],
        "checkpoint": ref_meta["checkpoint"], "state": ref_meta["state"], "inputs": description, "texts": TEXTS,
        "made_with": "scripts/parity/make_fixtures.sh (msclap 1.3.4 / laion_clap 1.1.7 in the side venv)",
        "check_at_creation": result,
    }  # fmt: skip
    (dest / f"{family}.json").write_text(json.dumps(meta) + "\n")
    arrays = {f"ref/{k}": ref[k] for k in ref.files} | {k: constants[k] for k in constants.files}
    np.savez_compressed(dest / f"{family}.npz", **arrays)
    size = (dest / f"{family}.npz").stat().st_size + (dest / f"{family}.json").stat().st_size
    print(f"{family}: fixture {dest / family}.{{json,npz}} ({size / 1e6:.2f} MB)")


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
    p.add_argument("step", choices=("prepare", "check", "fixture"))
    p.add_argument("family", choices=sorted(FAMILIES))
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--dest", type=Path, default=FIXTURES, help="fixture folder (step 'fixture')")
    a = p.parse_args()
    if a.step == "prepare":
        prepare(a.family, a.out)
        return 0
    if a.step == "fixture":
        fixture(a.family, a.out, a.dest)
        return 0
    return check(a.family, a.out)


if __name__ == "__main__":
    sys.exit(main())
