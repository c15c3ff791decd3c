"""The CLI's contracts with a newcomer (issue 19): no silent random weights, one download message, error
types that keep their promises, one naming scheme with old spellings warned, a usage line per subcommand,
--no-progress wherever --progress, one error line per failed file, and a quiet exit on a closed pipe."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import openclap
from openclap.cli import build_parser, main

DEMO = Path(openclap.__file__).parent / "assets" / "demo"
DOG = DEMO / "4-182613-A-sea_waves.flac"


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty hub cache and no network: every published file is missing."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub"


def _leaf_parsers(parser: argparse.ArgumentParser, prefix: str = "openclap"):
    """(command path, parser) for every (sub)command parser."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _leaf_parsers(sub, f"{prefix} {name}")


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


# ------------------------------------------------------------------------------------- random weights
def test_every_model_default_is_trained_or_fails_naming_the_download():
    """A command's default --model is a bundled trained model, a preset with published weights (which
    fails naming the download when absent), or None (the index's own model) -- never a random preset."""
    from openclap.caption.config import list_caption_models
    from openclap.pretrained import get_bundle, get_caption_bundle
    from openclap.registry import list_bundled_models

    checked = []
    for path, parser in _leaf_parsers(build_parser()):
        action = _option(parser, "--model")
        if action is None or parser._defaults.get("model", action.default) is None:
            continue
        default = parser._defaults.get("model", action.default)
        trained = default in list_bundled_models()
        published = get_bundle(default) is not None or (
            default in list_caption_models() and get_caption_bundle(default) is not None
        )
        assert trained or published, f"`{path}` defaults to {default!r}, which has random weights"
        checked.append(path)
    assert {"openclap classify", "openclap embed", "openclap index build", "openclap caption"} <= set(checked)


def test_index_build_and_serve_default_to_openclap_mini(tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("4-182613-A-sea_waves.flac", "4-160999-A-rain.flac"):
        shutil.copy(DEMO / name, clips / name)
    assert main(["index", "build", str(clips), "--out", str(tmp_path / "idx"), "--num-workers", "0"]) == 0
    info = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert info["model"] == "openclap-mini"

    from openclap.commands.serve import load_served

    args = build_parser().parse_args(["serve"])
    index, pipeline = load_served(args)
    assert index is None and not pipeline.random_weights
    assert pipeline.model.config.name == openclap.load("openclap-mini").model.config.name
    assert pipeline.templates.get("default") == "{}"  # the bundled model's own templates came along


def test_random_weights_only_by_name_and_said_in_the_output(tmp_path, capsys, caplog):
    assert not openclap.load("openclap-mini").random_weights
    with caplog.at_level("WARNING"):
        assert openclap.load("tiny").random_weights
    assert "RANDOM weights" in caplog.text
    # eval: the report says so in its model block
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        f"path,label\n{DEMO / '4-182613-A-sea_waves.flac'},sea waves\n{DEMO / '4-160999-A-rain.flac'},rain\n"
    )
    code = main(["eval", "zeroshot", "--manifest", str(manifest), "--model", "tiny", "--no-cache", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["model"]["random_weights"] is True


def test_results_of_random_weights_say_so(tmp_path, capsys):
    """classify and caption --json rows, and an index's index.json, carry random_weights when the model
    has seeded random weights (asked for by name), and only then."""
    for model, expected in (("tiny", True), ("openclap-mini", None)):
        assert main(["classify", str(DOG), "--labels", "dog", "rain", "--model", model, "--json"]) == 0
        assert json.loads(capsys.readouterr().out).get("random_weights") is expected, model
        out = tmp_path / f"idx-{model}"
        assert (
            main(["index", "build", str(DOG), "--model", model, "--out", str(out), "--num-workers", "0"]) == 0
        )
        assert json.loads((out / "index.json").read_text()).get("random_weights") is expected, model
        capsys.readouterr()
    assert main(["caption", str(DOG), "--model", "clapcap-tiny", "--json", "--greedy"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["random_weights"] is True


def test_captioner_without_weights_fails_naming_the_download(offline_hub, tmp_path, capsys):
    from openclap.caption import load_captioner

    with pytest.raises(FileNotFoundError) as err:
        load_captioner("clapcap-2023")
    for needed in ("clapcap_weights_2023.pth", "microsoft/msclap", "checkpoint=PATH", "--checkpoint PATH"):
        assert needed in str(err.value)
    assert main(["caption", str(DOG)]) == 2
    assert "clapcap_weights_2023.pth" in capsys.readouterr().err
    manifest = tmp_path / "c.csv"
    manifest.write_text(f"path,caption\n{DOG},waves\n")
    assert main(["eval", "captioning", "--manifest", str(manifest)]) == 2
    assert "microsoft/msclap" in capsys.readouterr().err
    assert load_captioner("clapcap-tiny").random_weights  # a preset without published weights: by name


# ----------------------------------------------------------------------------- one download message
def test_one_download_message_for_every_missing_published_file(offline_hub, tmp_path):
    from openclap.convert.export import convert_to_dir
    from openclap.factory import create_model, load_checkpoint
    from openclap.registry import get_model_config

    def _shape(msg: str, filename: str, repo: str) -> None:
        assert (
            f"{filename} from the Hugging Face repo {repo} (https://huggingface.co/{repo}/resolve/main/{filename})"
            in msg
        )
        assert "checkpoint=PATH (Python) or --checkpoint PATH (CLI)" in msg

    with pytest.raises(FileNotFoundError) as hub:  # no file: the hub cache, then no network
        openclap.load("msclap-2023")
    _shape(str(hub.value), "CLAP_weights_2023.pth", "microsoft/msclap")
    tiny = create_model(get_model_config("tiny"))
    with pytest.raises(FileNotFoundError) as explicit:  # an explicit path that does not exist
        load_checkpoint(tiny, tmp_path / "CLAP_weights_2023.pth")
    _shape(str(explicit.value), "CLAP_weights_2023.pth", "microsoft/msclap")
    with pytest.raises(FileNotFoundError) as conv:
        convert_to_dir("msclap", tmp_path / "nothere.pth", tmp_path / "out")
    assert "microsoft/msclap" in str(conv.value) and "CLAP_weights_2023.pth" in str(conv.value)
    with pytest.raises(FileNotFoundError) as laion:  # tokenizer and weights, listed together
        openclap.load("laion-htsat-tiny-roberta")
    assert "roberta-base" in str(laion.value)
    _shape(str(laion.value), "630k-audioset-best.pt", "lukewys/laion_clap")


# -------------------------------------------------------------------------------------- error contracts
def test_error_types_keep_their_documented_contracts(tmp_path, capsys):
    mini = openclap.load("openclap-mini")
    with pytest.raises(FileNotFoundError) as err:
        mini.embed_audio([str(tmp_path / "nothere.wav")])
    assert isinstance(err.value, openclap.AudioLoadError) and "nothere.wav" in str(err.value)
    with pytest.raises(FileNotFoundError):
        mini.classify([str(tmp_path / "nothere.wav")], ["a", "b"])

    assert main(["classify", str(DOG), "--labels", "a", "b", "--model", "msclap-2023/"]) == 2
    assert "no such model directory: msclap-2023/" in capsys.readouterr().err

    from openclap.caption.config import get_caption_config
    from openclap.caption.factory import create_caption_model, save_caption_model

    cap_dir = save_caption_model(create_caption_model(get_caption_config("clapcap-tiny")), tmp_path / "cap")
    with pytest.raises(FileNotFoundError, match="load_captioner"):
        openclap.load(cap_dir)

    weights = Path(openclap.__file__).parent / "assets" / "models" / "openclap-mini" / "model.safetensors"
    assert main(["convert", "msclap", str(weights), "--out", str(tmp_path / "x")]) == 2
    err_text = capsys.readouterr().err
    assert "already an openclap state dict" in err_text and "convert openclap" not in err_text


def test_one_error_line_per_failed_file(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really audio")
    good = tmp_path / "good.flac"
    shutil.copy(DOG, good)
    # a real process: the CLI's own logging configuration is part of what prints (pytest replaces it in-process)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "openclap",
            "embed",
            str(good),
            str(bad),
            "--out",
            str(tmp_path / "out"),
            "--num-workers",
            "0",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "broken.wav" in line]) == 1, proc.stderr


def test_classify_uses_the_models_own_prompt_by_default(capsys):
    labels = ["sea waves", "rain", "dog"]
    assert main(["classify", str(DOG), "--labels", *labels, "--top-k", "3", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    mini = openclap.load("openclap-mini")
    own = mini.classify([DOG], labels, template="{}")[0]  # templates.json "default"
    paper = mini.classify([DOG], labels, template="this is the sound of {}")[0]
    assert own.scores != pytest.approx(paper.scores, abs=1e-4)  # the two prompts are distinguishable
    assert got["labels"] == own.labels and got["scores"] == pytest.approx(own.scores, abs=1e-5)
    assert (
        main(
            [
                "classify",
                str(DOG),
                "--labels",
                *labels,
                "--top-k",
                "3",
                "--json",
                "--template",
                "this is the sound of {}",
            ]
        )
        == 0
    )  # the flag overrides
    assert json.loads(capsys.readouterr().out)["scores"] == pytest.approx(paper.scores, abs=1e-5)


# --------------------------------------------------------------------------------- names and parsers
@pytest.mark.parametrize(
    "argv, dest, value, old",
    [
        (["caption", "x.wav", "--hop", "2.5"], "hop_seconds", 2.5, "--hop"),
        (["embed", "x.wav", "--out", "o", "--workers", "0"], "num_workers", 0, "--workers"),
        (["index", "build", "x.wav", "--out", "o", "--workers", "3"], "num_workers", 3, "--workers"),
        (["eval", "linear-probe", "--manifest", "m.csv", "--folds", "4"], "num_folds", 4, "--folds"),
    ],
)
def test_old_spellings_are_accepted_and_warned(argv, dest, value, old, capsys):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    err = capsys.readouterr().err
    assert f"{old} is deprecated" in err and "next release" in err


def test_every_progress_flag_has_its_negation():
    for path, parser in _leaf_parsers(build_parser()):
        if _option(parser, "--progress") is not None:
            negation = _option(parser, "--no-progress")
            assert negation is not None, f"`{path}` has --progress without --no-progress"
            assert negation.dest == "progress"


def test_each_subcommand_reports_usage_errors_with_its_own_usage(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["classify", str(DOG), "--labels", "a", "--bogus"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: openclap classify") and "unrecognized arguments: --bogus" in err
    with pytest.raises(SystemExit):
        main(["embed", "merge", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: openclap embed merge") and "--pool" not in out
    with pytest.raises(SystemExit):
        main(["eval", "zeroshot", "--manifest", "m.csv", "--top-k", "3"])
    assert capsys.readouterr().err.startswith("usage: openclap eval zeroshot")
    assert main(["classify", str(DOG), "--labels", "a", "--top-k", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: openclap classify") and "--top-k must be >= 1" in err


def test_embed_merge_runs_under_its_own_parser(tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    for c in sorted(DEMO.glob("*.flac")):
        shutil.copy(c, clips / c.name)
    for i in (0, 1):
        assert (
            main(
                [
                    "embed",
                    str(clips),
                    "--out",
                    str(tmp_path / f"s{i}"),
                    "--shard",
                    f"{i}/2",
                    "--num-workers",
                    "0",
                    "--no-progress",
                ]
            )
            == 0
        )
    capsys.readouterr()
    assert (
        main(["embed", "merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "all")])
        == 0
    )
    assert "merged 2 output(s): 17 file(s)" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ pipes
@pytest.mark.parametrize("argv", [["eval", "datasets", "--json"], ["models"]])
def test_closed_pipe_exits_quietly(argv):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte: every write fails with EPIPE
    proc = subprocess.run(
        [sys.executable, "-m", "openclap", *argv],
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )
    os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""


def test_linear_probe_on_train_test_splits_shows_both_splits_and_no_spread():
    from openclap.eval.report import table_rows

    result = {
        "kind": "linear-probe",
        "task": "single_label",
        "dataset": "esc10",
        "split": "train",
        "folds": [{"fold": "test", "accuracy": 0.625}],
        "metrics": {"accuracy": 0.625, "accuracy_std": 0.0},
        "excluded": {"count": 0},
        "num_evaluated": 8,
        "num_items": 8,
    }
    [row] = table_rows([result])
    assert row[2] == "train -> test" and row[4] == "62.5"
    folds = dict(
        result,
        split=None,
        folds=[{"fold": "1", "accuracy": 0.5}, {"fold": "2", "accuracy": 0.75}],
        metrics={"accuracy": 0.625, "accuracy_std": 0.125},
    )
    [row] = table_rows([folds])
    assert row[2] == "-" and row[4] == "62.5 ± 12.5"


def test_training_from_python_shows_progress_without_logging_setup(tmp_path):
    """The trainer called from plain Python (no logging configured) still reports its steps on stderr."""
    import yaml

    recipe = {
        "model": "tiny",
        "tokenizer": "train",
        "tokenizer_vocab_size": 300,
        "train_manifest": [{"path": str(DEMO / "manifest.csv"), "max_items": 8}],
        "batch_size": 4,
        "max_steps": 2,
        "log_every": 1,
        "save_every": 2,
        "batchnorm": "frozen",
        "model_overrides": {"audio": {"duration": 1.0}},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    code = (
        "from openclap_train.config import load_config\nfrom openclap_train.train import train\n"
        f"train(load_config({str(tmp_path / 'r.yaml')!r}), {str(tmp_path / 'run')!r})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "step 1/2 loss" in proc.stderr and "step 2/2 loss" in proc.stderr, proc.stderr[-2000:]
