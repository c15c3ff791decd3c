"""Reference side of the parity checks; runs in the side venv (scripts/parity/setup_sidevenv.sh).

For one family it builds a random model with the reference implementation's own classes (msclap 1.3.4 or
laion_clap 1.1.7), saves it in that family's official checkpoint format, and writes the reference
embeddings of the given waveforms and texts. No hub access: the transformers text towers are built from
configs (the published sizes) instead of ``from_pretrained``, and tokenizers come from local files.

    python reference_models.py FAMILY --clips CLIPS.npz --texts TEXTS.json --tokenizer DIR --out WORKDIR

FAMILY: msclap-2023, msclap-2022, laion (HTSAT-tiny + RoBERTa), laion-fusion (same, fusion on).
Writes WORKDIR/<checkpoint file>, WORKDIR/reference.npz (audio, text, input_ids, attention_mask), and what
regenerates the checkpoint without this code (fixture_state: seed, fill recipe and state-dict SHA-256 in
WORKDIR/reference.json, the reference-built constants in WORKDIR/state_constants.npz).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch
import torch.nn.functional as F
from fixture_state import calibrate_batchnorm, describe_state, seeded_fill, state_sha256  # beside this script


# ------------------------------------------------------------------------------------------- msclap
def msclap_reference(
    version: str, clips: list[np.ndarray], texts: list[str], tok_dir: Path, out: Path
) -> dict:
    import msclap.CLAPWrapper as wrapper_mod
    import msclap.models.clap as clap_mod
    from transformers import AutoModel, BertConfig, BertTokenizer, GPT2Config, GPT2Tokenizer

    year = version.split("-")[1]

    def model_from_config(name: str, *args, **kwargs):  # msclap calls AutoModel.from_pretrained(text_model)
        cfg = GPT2Config() if "gpt" in name else BertConfig()  # defaults = gpt2 / bert-base-uncased sizes
        return AutoModel.from_config(cfg)

    def tokenizer_from_dir(name: str, *args, **kwargs):
        return (GPT2Tokenizer if "gpt" in name else BertTokenizer).from_pretrained(str(tok_dir))

    clap_mod.AutoModel.from_pretrained = model_from_config
    wrapper_mod.AutoTokenizer.from_pretrained = tokenizer_from_dir

    # Build msclap's CLAP exactly as CLAPWrapper.load_clap does, randomise, save as the official .pth.
    w = wrapper_mod.CLAPWrapper.__new__(wrapper_mod.CLAPWrapper)
    args = w.read_config_as_args(
        (Path(wrapper_mod.__file__).parent / f"configs/config_{year}.yml").read_text(), is_config_str=True
    )
    torch.manual_seed(0)
    clap = clap_mod.CLAP(
        audioenc_name=args.audioenc_name, sample_rate=args.sampling_rate, window_size=args.window_size,
        hop_size=args.hop_size, mel_bins=args.mel_bins, fmin=args.fmin, fmax=args.fmax,
        classes_num=args.num_classes, out_emb=args.out_emb, text_model=args.text_model,
        transformer_embed_dim=args.transformer_embed_dim, d_proj=args.d_proj,
    )  # fmt: skip
    seed = 1 if year == "2023" else 2
    # 2022 (CNN14 + BERT): fan-in scaled weights and BatchNorm statistics measured on the clips themselves,
    # so embeddings depend on the clip and on the pooled token (see fixture_state.fill_rule).
    scheme = "v1" if year == "2023" else "fanin"
    entries = seeded_fill(clap, seed, scheme)
    audio = torch.from_numpy(np.stack(clips)).float().unsqueeze(1)  # (B, 1, N), as preprocess_audio builds it
    if scheme == "fanin":
        calibrate_batchnorm(clap.audio_encoder, lambda: clap.audio_encoder(audio[:, 0]))
    clap.eval()
    state = dict(clap.state_dict())
    # The published files were written with an older transformers that persisted these buffers.
    if year == "2023":
        for i in range(clap.caption_encoder.base.config.n_layer):
            n = clap.caption_encoder.base.config.n_positions
            state[f"caption_encoder.base.h.{i}.attn.bias"] = torch.tril(
                torch.ones(n, n, dtype=torch.bool)
            ).view(1, 1, n, n)
            state[f"caption_encoder.base.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    else:
        n = clap.caption_encoder.base.config.max_position_embeddings
        state["caption_encoder.base.embeddings.position_ids"] = torch.arange(n).unsqueeze(0)
    ckpt = out / f"CLAP_weights_{year}.pth"
    torch.save({"model": state}, ckpt)
    recipe, constants = describe_state(state, clap, entries)

    # msclap's own loading path and inference API.
    ref = wrapper_mod.CLAPWrapper(model_fp=str(ckpt), version=year, use_cuda=False)
    missing, _ = ref.clap.load_state_dict(state, strict=False)
    assert not missing, f"msclap did not load {missing[:5]}"  # its own load uses strict=False
    with torch.no_grad():
        audio_emb = F.normalize(ref._get_audio_embeddings(audio), dim=-1)
        tokens = ref.preprocess_text(texts)
        text_emb = F.normalize(ref._get_text_embeddings(tokens), dim=-1)
    return {
        "checkpoint": ckpt.name,
        "audio": audio_emb.numpy(),
        "text": text_emb.numpy(),
        "input_ids": tokens["input_ids"].numpy(),
        "attention_mask": tokens["attention_mask"].numpy(),
        "state": {
            "seed": seed,
            "scheme": scheme,
            "wrapper": {"model": None},
            "sha256": state_sha256(state),
            **recipe,
        },
        "constants": constants,
    }


# -------------------------------------------------------------------------------------------- LAION
def _offline_laion_import() -> None:
    """laion_clap's training/data.py loads three hub tokenizers at import time (used only for training
    text); offline they fail, so they are stubbed for the import (we tokenise with local files)."""
    import transformers

    classes = [transformers.BertTokenizer, transformers.RobertaTokenizer, transformers.BartTokenizer]
    for cls in classes:
        cls.from_pretrained = classmethod(lambda cls, *a, **k: None)  # shadows the inherited method
    try:
        import laion_clap.training.data  # noqa: F401
    finally:
        for cls in classes:
            del cls.from_pretrained  # the inherited from_pretrained again


def laion_reference(
    fusion: bool, clips: list[np.ndarray], texts: list[str], tok_dir: Path, out: Path
) -> dict:
    _offline_laion_import()
    import laion_clap.clap_module.model as model_mod
    from laion_clap.clap_module.factory import create_model
    from laion_clap.training.data import float32_to_int16, get_audio_features, int16_to_float32
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    def roberta_from_config(
        name: str, *args, **kwargs
    ):  # LAION calls RobertaModel.from_pretrained('roberta-base')
        cfg = RobertaConfig(
            vocab_size=50265,
            max_position_embeddings=514,
            type_vocab_size=1,
            layer_norm_eps=1e-5,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
        )  # fmt: skip  (roberta-base's config.json)
        return RobertaModel(cfg)

    model_mod.RobertaModel.from_pretrained = roberta_from_config
    torch.manual_seed(0)
    kwargs = {"fusion_type": "aff_2d"} if fusion else {}
    model, model_cfg = create_model(
        "HTSAT-tiny", "roberta", precision="fp32", device="cpu", enable_fusion=fusion, **kwargs
    )
    seed = 3 if fusion else 4
    entries = seeded_fill(model, seed)
    model.eval()
    # LAION's training checkpoints: {'state_dict': {'module.' + key: ...}, 'epoch': ...}; its loader deletes
    # text_branch.embeddings.position_ids, so the published files hold it.
    state = {"module." + k: v for k, v in model.state_dict().items()}
    state["module.text_branch.embeddings.position_ids"] = torch.arange(514).unsqueeze(0)
    ckpt = out / ("630k-audioset-fusion-best.pt" if fusion else "630k-audioset-best.pt")
    torch.save({"epoch": 45, "state_dict": state}, ckpt)
    recipe, constants = describe_state(state, model, entries)

    from laion_clap.clap_module.factory import load_state_dict

    loaded = load_state_dict(str(ckpt), skip_params=True)
    model.load_state_dict(loaded)  # strict, as laion_clap's hook does

    # laion_clap.hook.CLAP_Module.get_audio_embedding_from_filelist after loading: the int16 round trip
    # ("quantize"), then get_audio_embedding_from_data(use_tensor=True); without the hub tokenizer.
    inputs = []
    for wave in [torch.from_numpy(int16_to_float32(float32_to_int16(c))).float() for c in clips]:
        inputs.append(
            get_audio_features(
                {},
                wave,
                480000,
                data_truncating="fusion" if fusion else "rand_trunc",
                data_filling="repeatpad",
                audio_cfg=model_cfg["audio_cfg"],
            )
        )
    tok = RobertaTokenizer.from_pretrained(str(tok_dir))
    tokens = tok(
        texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt"
    )  # hook.tokenizer
    with torch.no_grad():
        audio_emb = model.get_audio_embedding(inputs)
        text_emb = model.get_text_embedding({k: v for k, v in tokens.items() if k != "token_type_ids"})
    return {
        "checkpoint": ckpt.name,
        "audio": audio_emb.numpy(),
        "text": text_emb.numpy(),
        "input_ids": tokens["input_ids"].numpy(),
        "attention_mask": tokens["attention_mask"].numpy(),
        "state": {
            "seed": seed,
            "wrapper": {"epoch": 45, "state_dict": None},
            "sha256": state_sha256(state),
            **recipe,
        },
        "constants": constants,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("family", choices=("msclap-2023", "msclap-2022", "laion", "laion-fusion"))
    p.add_argument(
        "--clips",
        required=True,
        type=Path,
        help=".npz: 'waves' (B, N) at the family's rate, optional 'short' (B2, M)",
    )
    p.add_argument("--texts", required=True, type=Path, help="JSON list of texts")
    p.add_argument("--tokenizer", required=True, type=Path, help="tokenizer directory (vocab files)")
    p.add_argument("--out", required=True, type=Path, help="work directory")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    data = np.load(a.clips)
    clips = list(data["waves"]) + (list(data["short"]) if "short" in data else [])  # laion: shorter clips too
    texts = json.loads(a.texts.read_text())
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if a.family.startswith("msclap"):
        result = msclap_reference(a.family, clips, texts, a.tokenizer, a.out)
    else:
        result = laion_reference(a.family == "laion-fusion", clips, texts, a.tokenizer, a.out)
    arrays = {k: v for k, v in result.items() if k not in ("checkpoint", "state", "constants")}
    np.savez(a.out / "reference.npz", **arrays)
    np.savez_compressed(a.out / "state_constants.npz", **result["constants"])
    (a.out / "reference.json").write_text(
        json.dumps({"family": a.family, "checkpoint": result["checkpoint"], "state": result["state"]})
    )
    print(
        f"{a.family}: wrote {a.out / result['checkpoint']} and reference embeddings {result['audio'].shape}"
    )


if __name__ == "__main__":
    main()
