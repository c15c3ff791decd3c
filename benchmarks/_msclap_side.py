"""msclap's own CLAPWrapper timed on given files (run by embed_throughput.py in the side venv).

    .sidevenv/bin/python benchmarks/_msclap_side.py --out DIR --tokenizer TOKDIR --files-json F.json

Runs offline: GPT-2 is built from its config with random weights (seeded) instead of fetched from the
hub, the tokenizer is read from openclap's bundled GPT-2 files, and torchaudio.load (which needs
torchcodec here) is replaced by a soundfile read of the same samples. The random weights are saved as
``DIR/msclap_random_2023.pth`` (``{'model': state_dict}``, msclap's layout) so that openclap loads the
very same model. Writes ``DIR/msclap_result.json`` (timings, peak RSS) and ``DIR/msclap_<set>.npy``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from _memory import peak_rss_mb  # benchmarks/_memory.py (standard library only)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--tokenizer", required=True, help="folder with GPT-2 vocab.json and merges.txt")
    parser.add_argument("--files-json", required=True, help='{"set name": [paths...]}')
    parser.add_argument("--texts-json", required=True, help="list of prompts")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(0)
    out = Path(args.out)

    import msclap.CLAPWrapper as wrapper_mod
    import msclap.models.clap as clap_mod
    from transformers import GPT2Config, GPT2Model, GPT2TokenizerFast

    tok_dir = Path(args.tokenizer)
    clap_mod.AutoModel.from_pretrained = staticmethod(lambda name, *a, **k: GPT2Model(GPT2Config()))
    wrapper_mod.AutoTokenizer.from_pretrained = staticmethod(
        lambda name, *a, **k: GPT2TokenizerFast(
            vocab_file=str(tok_dir / "vocab.json"), merges_file=str(tok_dir / "merges.txt")
        )
    )

    def sf_load(path, *a, **k):
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (frames, channels)
        return torch.from_numpy(data.T.copy()), rate

    wrapper_mod.torchaudio.load = sf_load

    # Build the model with random weights and save them, then load through the normal constructor.
    w = wrapper_mod.CLAPWrapper.__new__(wrapper_mod.CLAPWrapper)
    args_cfg = w.read_config_as_args(
        (Path(wrapper_mod.__file__).parent / "configs" / "config_2023.yml").read_text(), is_config_str=True
    )
    model = clap_mod.CLAP(
        audioenc_name=args_cfg.audioenc_name,
        sample_rate=args_cfg.sampling_rate,
        window_size=args_cfg.window_size,
        hop_size=args_cfg.hop_size,
        mel_bins=args_cfg.mel_bins,
        fmin=args_cfg.fmin,
        fmax=args_cfg.fmax,
        classes_num=args_cfg.num_classes,
        out_emb=args_cfg.out_emb,
        text_model=args_cfg.text_model,
        transformer_embed_dim=args_cfg.transformer_embed_dim,
        d_proj=args_cfg.d_proj,
    )
    pth = out / "msclap_random_2023.pth"
    torch.save({"model": model.state_dict()}, pth)
    del model
    clap = wrapper_mod.CLAPWrapper(str(pth), version="2023", use_cuda=False)

    files = json.loads(Path(args.files_json).read_text())
    texts = json.loads(Path(args.texts_json).read_text())
    result: dict = {"torch_threads": torch.get_num_threads(), "sets": {}}
    for name, paths in files.items():
        list(clap.get_audio_embeddings_per_batch(paths[:2], args.batch_size))  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            emb = torch.cat(list(clap.get_audio_embeddings_per_batch(paths, args.batch_size)))
            best = min(best, time.perf_counter() - t0)
        np.save(out / f"msclap_{name}.npy", emb.numpy())
        result["sets"][name] = {"files": len(paths), "seconds": best, "clips_per_s": len(paths) / best}
    clap.get_text_embeddings(texts[:2])
    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        temb = torch.cat(list(clap.get_text_embeddings_per_batch(texts, 64)))
        best = min(best, time.perf_counter() - t0)
    np.save(out / "msclap_text.npy", temb.numpy())
    result["text"] = {"texts": len(texts), "seconds": best, "texts_per_s": len(texts) / best}
    result["peak_rss_mb"] = peak_rss_mb()  # VmHWM: ru_maxrss would include the parent's
    (out / "msclap_result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
