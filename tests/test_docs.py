"""Docs that cannot drift: every code block and command of README.md and docs/*.md is checked.

- Every fenced block is registered in ``BLOCKS`` with how it is checked; a new or moved block fails
  until it is registered here.
- Every ``openclap ...`` line (blocks and inline code in the prose) is parsed by the real argument parser,
  synopsis syntax (``[--x X | --y Y]``, ``a|b``, ``{a,b}``, ``...``) reduced to its first choice, so a
  renamed flag or subcommand fails.
- Concrete commands (no placeholders) run in a sandbox of the bundled demo clips, each with the outcome
  ``COMMANDS`` expects: runs (exit 0), or fails with the documented message (published weights that
  are not downloadable here: the one download message; outputs of an earlier recipe: the path it needs).
  Expensive ones (training recipes) run with ``-m slow`` in smoke size (2 steps, demo clips); data scripts
  with the smaller arguments in ``SMOKE`` (``-m slow`` when they need espeak-ng).
- Python blocks run with the substitutions in ``PYTHON`` (published weights -> the bundled openclap-mini
  or a random caption preset, named files -> sandbox clips), or must fail with the download message;
  the commands the page runs before a block first, and ``PYTHON_CHECKS`` on what the block computed.
- YAML and TOML blocks are parsed (training recipes through the trainer's typed config).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import openclap
from openclap.cli import _nested_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DEMO = Path(openclap.__file__).parent / "assets" / "demo"
DOWNLOAD = "https://huggingface.co/"  # every missing published file names its download address


@dataclass
class Block:
    doc: str  # path relative to the repository
    line: int
    lang: str
    text: str

    @property
    def key(self) -> str:
        first = next((ln for ln in self.text.splitlines() if ln.strip()), "")  # a block's name
        return f"{self.doc}: {' '.join(first.split())[:50]}"


def read_blocks() -> list[Block]:
    """Every fenced code block of the README and docs/."""
    out = []
    for path in DOCS:
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = re.match(r"^```(\w*)", lines[i])
            if m:
                j = i + 1
                while not lines[j].startswith("```"):
                    j += 1
                out.append(Block(str(path.relative_to(ROOT)), i + 1, m.group(1), "\n".join(lines[i + 1 : j])))
                i = j
            i += 1
    return out


ONNX_BLOCK = "docs/onnx.md: import openclap.onnx # imports numpy, soundfile, s"  # a key: doc + first line

# How each block is checked: "shell" (its commands, see COMMANDS), "python" (PYTHON), "yaml-recipe"
# (a whole training recipe), "yaml" / "toml" (parsed), or "sketch: why" (not code: a schema drawing).
BLOCKS = {
    "README.md: python3 -m venv .venv && . .venv/bin/activate && p": "shell",
    "README.md: import openclap": "python",
    "README.md: openclap --help # all commands; `openclap COMMAND ": "shell",
    'README.md: openclap.load("msclap-2023") # hub cache first, th': "python",
    "README.md: openclap convert msclap CLAP_weights_2023.pth --ou": "shell",
    "README.md: model: small # a preset, a model directory, or a f": "yaml-recipe",
    "README.md: openclap train configs/small-shared-data.yaml --ru": "shell",
    "docs/captioning.md: from openclap.caption import load_captioner": "python",
    "docs/captioning.md: openclap caption FILES_OR_DIR [--model clapcap-202": "shell",
    "docs/checkpoints.md: import openclap": "python",
    "docs/checkpoints.md: openclap convert msclap CLAP_weights_2023.pth --ou": "shell",
    "docs/evaluation.md: openclap eval zeroshot --dataset esc50 --root /dat": "shell",
    "docs/evaluation.md: {": "sketch: the shape of results.json, with <placeholders>",
    'docs/evaluation.md: model = "msclap-2023" # --model on the command lin': "toml",
    "docs/inference.md: openclap embed FILES_OR_DIR_OR_MANIFEST... --out D": "shell",
    "docs/inference.md: openclap index build FILES_OR_DIR... --out INDEX [": "shell",
    "docs/inference.md: openclap serve [--model M] [--index INDEX] [--host": "shell",
    "docs/openclap-mini.md: import openclap": "python",
    "docs/openclap-mini.md: bash scripts/train_openclap_mini.sh runs/openclap-": "shell",
    "docs/pretraining.md: openclap pretrain-audio configs/pretrain-audio/sha": "shell",
    "docs/pretraining.md: tasks:": "yaml",
    "docs/pretraining.md: openclap train configs/small-shared-data.yaml --ru": "shell",
    "docs/pretraining.md: python -m openclap_train.multitask.adapters esc50 ": "shell",
    "docs/pretraining.md: - {name: esc50, manifest: {path: manifests/esc50.c": "yaml",
    "docs/pretraining.md: python scripts/ablation_htsat22.py --model small -": "shell",
    "docs/onnx.md: openclap export onnx openclap-mini --out mini-onnx": "shell",
    ONNX_BLOCK: "python",
    "docs/openclap-mini.md: python scripts/make_synthetic_digits.py runs/data/": "shell",
    "docs/openclap-mini.md: RECIPE=configs/openclap-mini-next.yaml VALIDATION_": "shell",
}

# Concrete commands (after joining continuation lines and dropping comments) -> expected outcome:
# "ok" (exit 0), "download" (exit 2 naming a download address), "missing: TEXT" (exit != 0, stderr has
# TEXT: the output of an earlier documented step), "slow" (ok, run with -m slow), "smoke" (ok, with SMOKE's
# smaller arguments), "before: BLOCK" (ok, run by python block BLOCK's setup, whose input it makes), "skip: why".
COMMANDS = {
    "openclap demo": "ok",
    "python -m pytest -q": "skip: the test suite itself",
    "python3 -m venv .venv": "skip: installation (CI installs exactly this way)",
    ". .venv/bin/activate": "skip: installation",
    "pip install torch==2.13.0": "skip: installation",
    "openclap --help": "ok",
    "openclap models": "ok",
    "openclap convert msclap CLAP_weights_2023.pth --out models/msclap-2023": "download",
    "openclap convert hf path/to/clap-htsat-unfused --out models/laion-unfused": "missing: not found",
    "openclap train configs/small-shared-data.yaml --run-dir runs/small": "slow",
    "python scripts/make_shards.py data/train.csv --out shards/train": "ok",
    "openclap caption long.flac --greedy": "download",
    "openclap caption clips/ --sample --temperature 0.8 --top-p 0.9 --seed 0": "download",
    "openclap caption clips/ --model runs/caption-small/final --beam 5 --rerank clap": (
        "missing: runs/caption-small/final"
    ),
    "openclap eval captioning --manifest test.csv --split test --model runs/caption-small/final --out report/": (
        "missing: runs/caption-small/final"
    ),
    "openclap train configs/small-shared-data-capval.yaml --run-dir runs/small-capval": "slow",
    "openclap train configs/caption-small-shared-data.yaml --run-dir runs/caption-small": (
        "missing: runs/small-capval"
    ),
    "openclap convert msclap clapcap_weights_2023.pth --text-from CLAP_weights_2023.pth --out clapcap-audio/": (
        "download"
    ),
    "openclap convert laion 630k-audioset-best.pt --out laion-tiny/ --tokenizer roberta-base-files/": "download",
    "openclap convert hf clap-htsat-unfused/ --out laion-hf/": "missing: not found",
    "openclap convert msclap CLAP_weights_2023.pth --out msclap-2023/": "download",
    "openclap classify dog.wav --labels dog rain --model msclap-2023/": "missing: no such model directory",
    "openclap eval datasets --json": "ok",
    "openclap export onnx openclap-mini --out mini-onnx": f"before: {ONNX_BLOCK}",
    "python scripts/make_synthetic_digits.py runs/data/synthetic-digits": "slow",  # espeak-ng
    "python scripts/make_timbre_variants.py runs/data/timbre-val": "smoke",
    "RECIPE=configs/openclap-mini-next.yaml VALIDATION_ONLY=1 bash scripts/train_openclap_mini.sh "
    "runs/openclap-mini-next": (
        "skip: a candidate recipe the reader writes (hours; evaluates on ../shared/data); the shipped recipe it "
        "copies trains in smoke size (SCRIPT_RECIPES), the two data scripts above run here"
    ),
    "python scripts/mini_validation.py runs/openclap-mini runs/openclap-mini-next": (
        "missing: runs/openclap-mini/val_templates.json is missing"
    ),
    "openclap eval zeroshot --manifest labels.csv --label-column label --split test": "ok",
    "bash scripts/train_openclap_mini.sh runs/openclap-mini --install": (
        "skip: the full openclap-mini recipe (hours); its train step runs in smoke size (SCRIPT_RECIPES)"
    ),
    "openclap pretrain-audio configs/pretrain-audio/shared-data-7tasks.yaml --run-dir runs/pt": "slow",
    "openclap pretrain-audio configs/pretrain-audio/shared-data-7tasks.yaml --run-dir runs/pt --resume latest": (
        "slow"
    ),
    "openclap train configs/small-shared-data.yaml --run-dir runs/clap-pt --set init_audio=runs/pt/final": "slow",
    "torchrun --nproc_per_node 2 -m openclap_train.multitask configs/pretrain-audio/shared-data-7tasks.yaml "
    "--run-dir runs/pt": "skip: tests/test_pretrain_audio_distributed.py runs it under torchrun",
    "python -m openclap_train.multitask.adapters esc50 ~/data/ESC-50-master --out manifests/esc50.csv": (
        "missing: ESC-50-master"
    ),
    "python -m openclap_train.multitask.adapters vocalsound ~/data/vocalsound_16k --split train --out "
    "manifests/vocalsound.csv": "missing: vocalsound_16k",
    "python -m openclap_train.multitask.adapters crema-d ~/data/CREMA-D --out manifests/crema-d.csv": (
        "missing: CREMA-D"
    ),
    "python -m openclap_train.multitask.adapters gtzan-genres ~/data/gtzan --out manifests/gtzan.csv": (
        "missing: gtzan"
    ),
    "python -m openclap_train.multitask.adapters nsynth-pitch ~/data/nsynth-train --split train --out "
    "manifests/nsynth-pitch.csv": "missing: nsynth-train",
    "python -m openclap_train.multitask.adapters fsd50k ~/data/FSD50K --split dev --out manifests/fsd50k.csv": (
        "missing: FSD50K"
    ),
    "python scripts/ablation_htsat22.py --model small --duration 2.5 --batch-size 64 --pretrain-steps 150 "
    "--clap-steps 300 --threads 1 --out runs/ablation-small": "skip: the full ablation (hours; reads ../shared/data)",
    "python scripts/ablation_htsat22.py --out runs/ablation-small --probe": (
        "skip: probes the ablation run's models (the line above, hours)"
    ),
    "python scripts/ablation_htsat22.py --out runs/ablation-small --report": (
        "skip: tabulates the ablation run (the line above, hours)"
    ),
}

# Python blocks: (old, new) substitutions, or "download" (each statement fails naming the download).
PYTHON = {
    "README.md: import openclap": [
        ('"msclap-2023", checkpoint="CLAP_weights_2023.pth", device="cpu"', '"openclap-mini", device="cpu"'),
    ],
    'README.md: openclap.load("msclap-2023") # hub cache first, th': "download",
    "docs/checkpoints.md: import openclap": "download",
    "docs/captioning.md: from openclap.caption import load_captioner": [
        ('"clapcap-2023", checkpoint="clapcap_weights_2023.pth"', '"clapcap-tiny"'),
    ],
    "docs/openclap-mini.md: import openclap": [],
    ONNX_BLOCK: [],
}


def _clip_at(rate: int):
    """A real recording (the demo corpus's rain) decoded at ``rate``: the waveform a snippet's reader has."""
    from openclap.audio.io import load_audio

    return load_audio(DEMO / "4-160999-A-rain.flac", rate)


def _onnx_block_check(scope: dict) -> None:
    """What docs/onnx.md says of its snippet: (N, D) L2-normalised embeddings, PyTorch's to cos >= 0.99999."""
    import numpy as np

    torch_model = openclap.load("openclap-mini")
    inputs = ["dog.wav", (scope["waveform"], 22050)]
    for got, want in (
        (scope["a"], torch_model.embed_audio(inputs)),
        (scope["t"], torch_model.embed_text(["a dog barking", "rain"])),
    ):
        assert got.shape == want.shape and np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
        assert (got * want).sum(axis=1).min() >= 0.99999


# Names a python block uses without defining them (the reader's own data: a real clip, decoded here), and
# what must hold after it ran.
PYTHON_GLOBALS = {
    ONNX_BLOCK: lambda: {"waveform": _clip_at(22050)},
}
PYTHON_CHECKS = {ONNX_BLOCK: _onnx_block_check}

# Data scripts whose documented run takes minutes run with their documented arguments plus these (smaller
# ones), from an empty folder: (extra arguments given the sandbox, rows the manifest must then list, a
# program they need). Every row's file must exist.
SMOKE = {
    "python scripts/make_synthetic_digits.py runs/data/synthetic-digits": (
        lambda box: ["--variants", "m3", "f2", "--val-variants", "f2", "--digits", "3", "7", "--takes", "1"],
        4,
        "espeak-ng",
    ),
    "python scripts/make_timbre_variants.py runs/data/timbre-val": (
        lambda box: ["--recipe", str(_timbre_recipe(box)), "--variants", "1"],
        5,  # the demo corpus's 5 FluidR3 notes
        None,
    ),
}


def _timbre_recipe(box: Path) -> Path:
    """A recipe whose validation set `instruments-val` (the script's default) is the demo corpus's notes."""
    import yaml

    recipe = box / "timbre-recipe.yaml"
    spec = {
        "path": str(DEMO / "manifest.csv"),
        "name": "instruments-val",
        "include": {"dataset": ["instruments"]},
    }
    recipe.write_text(yaml.safe_dump({"val_manifest": [spec]}))
    return recipe


PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]+(\.\.\.)?$|^[A-Z]$|\.\.\.$|^PATH|^/data/|configs/my\.yaml")


def logical_lines(text: str) -> list[str]:
    """Shell lines with continuations joined and comments dropped; `a && b` and `a ; b` split."""
    out, cur = [], ""
    for raw in text.splitlines():
        line = re.sub(r"\s+#\s.*$", "", raw).rstrip()
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            cur += line[:-1].strip() + " "
            continue
        cur += line.strip()
        for part in re.split(r"\s+&&\s+|\s+;\s+", cur):
            if part.strip():
                out.append(" ".join(part.split()))
        cur = ""
    return out


def synopsis_argv(command: str) -> list[str]:
    """An argv from a synopsis line: each [..|..] and a|b reduced to its first choice, `...` dropped."""
    s = command
    s = re.split(r"\s+\|\s+(?![^\[]*\])", s)[0]  # top-level "A | B": the first form
    while re.search(r"\[[^\[\]]*\]", s):
        s = re.sub(r"\[([^\[\]]*)\]", lambda m: m.group(1).split(" | ")[0], s)
    s = re.sub(r"\{(\w+),[^}]*\}", r"\1", s)
    words = []
    for w in shlex.split(s.replace("$", "")):
        if w == "...":
            continue
        w = w.removesuffix("...")
        w = w.split("|")[0] if re.fullmatch(r"[\w.-]+(\|[\w.-]+)+", w) else w
        words.append(w)
    # typed placeholders: a number where argparse wants one
    numeric = {"K": "3", "N": "2", "S": "1.0", "T": "{}", "M": "openclap-mini", "i/n": "0/1"}
    return [numeric.get(w, w) for w in words[1:]]


def parse_check(command: str, fragment: bool = False) -> None:
    """Parse an `openclap` command line with the real parser; SystemExit means it would not run. A
    ``fragment`` (inline prose naming one option) may leave required arguments out, nothing else."""
    argv = synopsis_argv(command)
    parser, rest = _nested_parser(argv)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(rest)
        except SystemExit as exc:
            if fragment and "required" in err.getvalue() and "unrecognized" not in err.getvalue():
                return
            if exc.code not in (0, None):
                raise AssertionError(f"`{command}` does not parse: {err.getvalue().strip()}") from None


def inline_commands() -> list[tuple[str, str]]:
    """`openclap ...` commands with options written inline in the prose."""
    found = []
    for path in DOCS:
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
        for cmd in re.findall(r"`(openclap [^`]*--[^`]*)`", text):
            found.append((str(path.relative_to(ROOT)), " ".join(cmd.split())))
    return found


def test_every_block_is_registered():
    keys = [b.key for b in read_blocks()]
    unknown = [k for k in keys if k not in BLOCKS]
    assert not unknown, f"new or changed code blocks; register how each is checked in BLOCKS: {unknown}"
    assert not [k for k in BLOCKS if k not in keys], "BLOCKS lists blocks the docs no longer have"


def shell_commands() -> list[tuple[Block, str]]:
    return [(b, c) for b in read_blocks() if BLOCKS.get(b.key) == "shell" for c in logical_lines(b.text)]


def test_every_openclap_command_parses():
    commands = [c for _, c in shell_commands() if c.startswith("openclap ")]
    assert len(commands) > 40
    for command in commands:
        parse_check(command)
    for _, command in inline_commands():
        parse_check(command, fragment=True)


def test_every_concrete_command_is_registered():
    concrete = {f for _, c in shell_commands() if (f := concrete_form(c)) is not None}
    missing = sorted(concrete - set(COMMANDS))
    assert not missing, f"commands in the docs without an expected outcome in COMMANDS: {missing}"
    assert not sorted(set(COMMANDS) - concrete), "COMMANDS lists commands the docs no longer have"


def concrete_form(command: str) -> str | None:
    """The command to run: as written, or a synopsis whose optional parts name no placeholder
    (`openclap eval datasets [--json]` -> `openclap eval datasets --json`); None when it has placeholders."""
    if not is_synopsis(command):
        return command
    if not command.startswith("openclap "):
        return None
    normal = "openclap " + " ".join(synopsis_argv(command))
    return None if is_synopsis(normal) else normal


def is_synopsis(command: str) -> bool:
    return "[" in command or any(PLACEHOLDER.search(w) for w in command.split()[1:])


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A folder holding what the docs' examples name: dog.wav, rain.flac, long.flac, clips/, manifests."""
    import numpy as np
    import soundfile as sf

    box = tmp_path_factory.mktemp("docs")
    clips = sorted(DEMO.glob("*.flac"))
    (box / "clips").mkdir()
    for c in clips[:3]:
        shutil.copy(c, box / "clips" / c.name)
    dog, rate = sf.read(str(DEMO / "4-182613-A-sea_waves.flac"))
    sf.write(str(box / "dog.wav"), dog, rate)
    shutil.copy(DEMO / "4-160999-A-rain.flac", box / "rain.flac")
    parts = [sf.read(str(c))[0] for c in clips[:4]]
    long = np.concatenate([p if p.ndim == 1 else p.mean(axis=1) for p in parts])
    for name in ("long.flac", "one_hour.flac", "street_10min.flac"):
        sf.write(str(box / name), long, rate)
    (box / "test.csv").write_text(
        "path,caption,split\n" + "\n".join(f"{c},caption of {Path(c).stem},test" for c in clips[:3]) + "\n"
    )
    (box / "labels.csv").write_text(
        "path,label,split\n" + "\n".join(f"{c},{Path(c).stem.split('-')[-1]},test" for c in clips[:3]) + "\n"
    )
    (box / "data").mkdir()
    rows = "\n".join(f"{c},caption of {Path(c).stem}" for c in clips[:4])
    (box / "data" / "train.csv").write_text("path,caption\n" + rows + "\n")
    return box


def run_command(command: str, cwd: Path) -> tuple[int, str]:
    """Run a documented command from ``cwd``; `openclap` in-process, anything else as a subprocess."""
    if command.startswith("openclap "):
        err = io.StringIO()
        with (
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.chdir(cwd),
        ):
            try:
                code = main(shlex.split(command)[1:])
            except SystemExit as exc:
                code = int(exc.code or 0)
        return code, err.getvalue()
    argv = [str(Path(a).expanduser()) if a.startswith("~") else a for a in shlex.split(command)]
    if argv[0] == "python" and argv[1] == "-m":  # in-process: the imports are already paid for
        return _run_python(cwd, argv[3:], module=argv[2])
    if argv[0] == "python":
        return _run_python(cwd, argv[2:], script=str(ROOT / argv[1]))
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    return proc.returncode, proc.stderr


def _run_python(
    cwd: Path, args: list[str], module: str | None = None, script: str | None = None
) -> tuple[int, str]:
    """`python -m MODULE ARGS` or `python SCRIPT ARGS` in this process (runpy), stderr captured."""
    import runpy

    err = io.StringIO()
    old_argv = sys.argv
    sys.argv = [module or script, *args]
    code = 0
    try:
        with (
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.chdir(cwd),
        ):
            if module:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            err.write(exc.code)
    except Exception as exc:  # noqa: BLE001 - an uncaught exception is what a user would see as a traceback
        code = 1
        err.write(f"Traceback (most recent call last):\n{type(exc).__name__}: {exc}")
    finally:
        sys.argv = old_argv
    return code, err.getvalue()


def _cases(slow: bool) -> list[str]:
    wanted = (
        {"slow"} if slow else {"ok", "download"} | {o for o in COMMANDS.values() if o.startswith("missing")}
    )
    return [c for c, o in COMMANDS.items() if o in wanted]


@pytest.mark.parametrize("command", _cases(slow=False))
def test_documented_command_runs_or_says_what_is_missing(command, sandbox, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(sandbox / "empty-hub"))
    work = sandbox / re.sub(r"\W+", "_", command)[:80]
    shutil.copytree(sandbox, work, ignore=shutil.ignore_patterns("_*", "openclap*", "python*", "empty-hub"))
    if " configs/" in command:  # repository-relative recipes
        shutil.copytree(ROOT / "configs", work / "configs")
    code, err = run_command(command, work)
    outcome = COMMANDS[command]
    if outcome == "ok":
        assert code == 0, err
    elif outcome == "download":
        assert code == 2 and DOWNLOAD in err and "Traceback" not in err, err
    else:
        needed = outcome.split(": ", 1)[1]
        assert code != 0 and needed in err, err
        assert "Traceback" not in err or command.startswith("python scripts/"), err


def test_python_blocks_run(sandbox, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(sandbox / "empty-hub"))
    monkeypatch.chdir(sandbox)
    blocks = {b.key: b for b in read_blocks() if BLOCKS.get(b.key) == "python"}
    assert set(blocks) == set(PYTHON), "register every python block in PYTHON"
    for key, plan in PYTHON.items():
        code = blocks[key].text
        if plan == "slow":
            continue
        if plan == "download":
            for stmt in [s for s in code.splitlines() if s.strip() and not s.startswith(("import", "#"))]:
                with pytest.raises(FileNotFoundError, match=re.escape(DOWNLOAD)):
                    exec(compile(stmt.split("  #")[0], key, "exec"), {"openclap": openclap})  # noqa: S102 - the docs' snippet
            continue
        for old, new in plan:
            assert old in code, f"{key}: the substitution {old!r} no longer matches the block"
            code = code.replace(old, new)
        for command in [c for c, o in COMMANDS.items() if o == f"before: {key}"]:  # the page's step before it
            status, err = run_command(command, sandbox)
            assert status == 0, f"{command}: {err}"
        scope = PYTHON_GLOBALS.get(key, dict)()
        exec(compile(code, key, "exec"), scope)  # noqa: S102 - running the docs' own snippet is the point
        if key in PYTHON_CHECKS:
            PYTHON_CHECKS[key](scope)


def test_yaml_and_toml_blocks_parse(tmp_path):
    import tomllib
    import yaml

    from openclap_train.config import load_config

    for b in read_blocks():
        plan = BLOCKS.get(b.key, "")
        if plan == "yaml-recipe":
            recipe = tmp_path / "recipe.yaml"
            recipe.write_text(b.text)
            cfg = load_config(recipe)  # unknown keys or bad values fail here
            assert cfg.model
        elif plan == "yaml":
            text = b.text if not b.text.startswith("  -") else "tasks:\n" + b.text
            assert yaml.safe_load(text)
        elif plan == "toml":
            assert tomllib.loads(b.text)


@pytest.mark.parametrize("command", [c for c, o in COMMANDS.items() if o == "smoke"])
def test_documented_data_script_runs_in_smoke_size(command, sandbox, tmp_path):
    run_script_smoke(command, sandbox, tmp_path)


def run_script_smoke(command: str, sandbox: Path, cwd: Path) -> None:
    """A documented data script with its SMOKE arguments: exit 0, and a manifest whose files exist."""
    extra, rows, program = SMOKE[command]
    if program and shutil.which(program) is None and not os.environ.get("CI"):  # CI installs it
        pytest.skip(f"{program} is not installed (Debian/Ubuntu: apt-get install -y {program})")
    argv = shlex.split(command)
    status, err = _run_python(cwd, [*argv[2:], *extra(sandbox)], script=str(ROOT / argv[1]))
    assert status == 0, err
    manifest = cwd / argv[2] / "manifest.csv"
    with open(manifest, newline="") as f:
        listed = [r["path"] for r in csv.DictReader(f)]
    assert len(listed) == rows and all((manifest.parent / p).is_file() for p in listed), listed


@pytest.mark.slow
@pytest.mark.parametrize("command", _cases(slow=True))
def test_documented_recipe_runs_in_smoke_size(command, sandbox, tmp_path):
    """Training recipes, 2 steps on the demo clips (the recipes' own data is ../shared/data); data scripts
    that need a system program (espeak-ng) in SMOKE size."""
    if command in SMOKE:
        run_script_smoke(command, sandbox, tmp_path)
        return
    argv = shlex.split(command)[1:]
    run_dir = tmp_path / "run"
    argv[argv.index("--run-dir") + 1] = str(run_dir)
    argv = [str(ROOT / a) if a.startswith("configs/") else a for a in argv]
    if "--resume" in argv:  # resume needs a run to resume: make one first
        first = [a for a in argv if a not in ("--resume", "latest")]
        assert main([*first, *smoke_overrides(argv[0], sandbox)]) == 0
    if "init_audio=runs/pt/final" in argv:  # the handover needs the documented pretraining run: make it first
        pretrain = ["pretrain-audio", str(ROOT / "configs/pretrain-audio/shared-data-7tasks.yaml")]
        assert (
            main([*pretrain, "--run-dir", str(tmp_path / "pt"), *smoke_overrides("pretrain-audio", sandbox)])
            == 0
        )
        argv[argv.index("init_audio=runs/pt/final")] = f"init_audio={tmp_path / 'pt' / 'final'}"
    assert main([*argv, *smoke_overrides(argv[0], sandbox)]) == 0


# The training recipe each skipped script runs (its `openclap train` step), run here in smoke size.
SCRIPT_RECIPES = {
    "bash scripts/train_openclap_mini.sh runs/openclap-mini --install": "configs/openclap-mini.yaml",
}


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(SCRIPT_RECIPES))
def test_recipe_of_a_skipped_script_trains_in_smoke_size(command, sandbox, tmp_path):
    assert COMMANDS[command].startswith("skip:") and SCRIPT_RECIPES[command] in command + " " + (
        (ROOT / "scripts/train_openclap_mini.sh").read_text()  # the script's default RECIPE
    )
    argv = ["train", str(ROOT / SCRIPT_RECIPES[command]), "--run-dir", str(tmp_path / "run")]
    assert main([*argv, *smoke_overrides("train", sandbox)]) == 0
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def smoke_overrides(command: str, sandbox: Path) -> list[str]:
    """2 steps on the demo clips instead of the recipe's data."""
    train = sandbox / "data" / "train.csv"
    if command == "train":
        return [
            "--max-steps",
            "2",
            "--set",
            f"train_manifest=[{{path: {train}}}]",
            "--set",
            "val_manifest=[]",
            "--set",
            "batch_size=2",
            "--set",
            "eval_every=0",
        ]
    return ["--max-steps", "2"]
