#!/usr/bin/env bash
# Build the side venv used by the parity scripts: the reference implementations msclap 1.3.4 and
# laion-clap 1.1.7 next to a CPU torch 2.13.0. Their torchaudio/torchvision dependencies are CUDA
# wheels on PyPI; installed with --no-deps and with their compiled extensions moved aside they import
# in pure-Python mode, which is all the reference code needs for inference on tensors.
# Usage: bash scripts/parity/setup_sidevenv.sh [VENV_DIR]   (default: <repo>/.sidevenv)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${1:-$REPO/.sidevenv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/pip"
"$PIP" install -q --upgrade pip
# torch must be the CPU build 2.13.0 (this machine's pip finds it in its local wheel directory).
"$PIP" install -q "torch==2.13.0"
# The reference packages and the torch-family wheels matching torch 2.13 without their (CUDA) pins.
"$PIP" install -q --no-deps msclap==1.3.4 laion-clap==1.1.7 torchaudio==2.11.0 torchvision==0.28.0
# Their own pins (msclap 1.3.4: transformers<5, numpy<2, librosa<0.11, pandas<3), which laion_clap accepts.
"$PIP" install -q "transformers>=4.34,<5" "numpy>=1.23,<2" "pandas>=2,<3" "pyyaml" "librosa>=0.10.1,<0.11" "soundfile" "scipy" \
  "tqdm" "h5py" "braceexpand" "webdataset" "wget" "ftfy" "regex" "torchlibrosa" "scikit-learn" \
  "safetensors" "huggingface_hub" "pillow" "progressbar"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# The PyPI torchaudio/torchvision wheels are CUDA builds whose compiled extensions cannot load next to
# the CPU torch: move them aside so both packages run in pure-Python mode (all the reference code needs).
for pkg in torchaudio torchvision; do
  mkdir -p "$SITE/${pkg}_so_disabled"
  find "$SITE/$pkg" -name '*.so' -exec mv -t "$SITE/${pkg}_so_disabled" {} + 2>/dev/null || true
done
# torchvision registers fake kernels for its nms ops even when its extension did not load, which fails
# at import; guard those two registrations the way torchvision guards its other ones.
sed -i 's/^@torch.library.register_fake("torchvision::\(q\?nms\)")/@(torch.library.register_fake("torchvision::\1") if torchvision.extension._has_ops() else (lambda f: f))/' \
  "$SITE/torchvision/_meta_registrations.py"
# Smoke test. (laion_clap itself is not imported here: its training/data.py loads hub tokenizers at
# import time, which fails offline; reference_models.py stubs those for the import.)
cd /tmp && HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$VENV/bin/python" - <<'PY'
import importlib.util
import torch, torchaudio, torchvision, torchlibrosa, transformers, msclap
assert importlib.util.find_spec("laion_clap") is not None
print("side venv ok: torch", torch.__version__, "torchaudio", torchaudio.__version__,
      "torchvision", torchvision.__version__, "transformers", transformers.__version__)
PY
