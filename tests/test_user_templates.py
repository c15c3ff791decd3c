"""User prompt templates are filled by ``fill_template`` everywhere (never ``str.format``): a template with
other braces ("{label}", "{0.__class__}") gets the label in its one "{}" and keeps the rest literally,
in the library's zero-shot evaluation, `openclap eval zeroshot`, `openclap demo` (a model's templates.json),
the trainer's validation and its test report. With ``str.format`` each of these raised (KeyError,
ValueError) or could read attributes of the label."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import openclap
from openclap.cli import main
from openclap.eval.zero_shot import class_text_embeddings
from openclap.pipeline import fill_template
from openclap.registry import bundled_model_dir

DEMO = Path(openclap.__file__).parent / "assets" / "demo"
HOSTILE = ["{label}: {}", "{0.__class__} {}"]  # str.format: KeyError 'label'; ValueError (manual + automatic)
LABELS = ["dog", "rain", "sea waves", "rooster"]
CLIPS = [DEMO / "4-183992-A-dog.flac", DEMO / "4-160999-A-rain.flac", DEMO / "4-182613-A-sea_waves.flac"]


@pytest.fixture(scope="module")
def mini():
    return openclap.load("openclap-mini")


def test_fill_template_is_literal_apart_from_its_one_slot():
    assert fill_template("{label}: {}", "dog") == "{label}: dog"
    assert fill_template("{0.__class__} {}", "dog") == "{0.__class__} dog"
    with pytest.raises(ValueError, match="exactly once"):
        fill_template("{0.__class__}", "dog")


@pytest.mark.parametrize("template", HOSTILE)
def test_zero_shot_class_embeddings_use_the_literal_prompt(mini, template):
    got = class_text_embeddings(mini, LABELS, [template])
    want = mini.embed_text([template.replace("{}", label) for label in LABELS])
    assert np.allclose(got, want, atol=1e-6)


def test_eval_zeroshot_command_takes_a_template_with_other_braces(mini, tmp_path, capsys):
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label\n" + "".join(f"{c},{c.stem.split('-')[-1]}\n" for c in CLIPS))
    template = HOSTILE[1]
    argv = [
        "eval",
        "zeroshot",
        "--manifest",
        str(manifest),
        "--template",
        template,
        "--model",
        "openclap-mini",
    ]
    code = main([*argv, "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--json"])
    assert code == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)["results"][0]
    classes = result["classes"]  # as the evaluation names them (sea_waves -> sea waves)
    audio = mini.embed_audio(CLIPS)
    text = mini.embed_text([template.replace("{}", c) for c in classes])
    truth = [classes.index(c.stem.split("-")[-1].replace("_", " ")) for c in CLIPS]
    expected = float(np.mean(np.argmax(audio @ text.T, axis=1) == truth))
    assert result["templates"] == [template] and result["metrics"]["accuracy"] == pytest.approx(expected)


def test_demo_fills_a_models_own_template_literally(mini, tmp_path):
    model = tmp_path / "mini"
    shutil.copytree(bundled_model_dir("openclap-mini"), model)
    template = HOSTILE[0]
    # no esc10 entry: the model's "default" prompt is esc10's (the demo's own prompt only without one)
    (model / "templates.json").write_text(json.dumps({"default": template, "fsdd": "{}"}))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = "".join(f"{c.name},{c.stem.split('-')[-1]},esc10,a sound\n" for c in CLIPS)
    (corpus / "manifest.csv").write_text("path,label,dataset,caption\n" + rows)
    for c in CLIPS:
        shutil.copy(c, corpus / c.name)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["demo", "--model", str(model), "--corpus", str(corpus), "--out", str(tmp_path / "out")])
    assert code == 0
    from openclap.commands.demo import LABEL_SETS

    labels = LABEL_SETS["esc10"]
    sims = mini.embed_audio(CLIPS) @ mini.embed_text([template.replace("{}", x) for x in labels]).T
    lines = [line.split() for line in out.getvalue().splitlines()]
    table = {row[0]: row for row in lines if row and row[-1] in ("yes", "no")}
    for clip, row in zip(CLIPS, sims):
        best = int(np.argmax(row))
        assert table[clip.name][-2] == f"{row[best]:.3f}"  # the cosine of the literal prompt's best label
    assert f"esc10: '{template}'" in out.getvalue()


def test_trainer_validation_and_report_fill_templates_literally(mini, tmp_path):
    from openclap.audio.io import load_audio
    from openclap_train.data import EvalSet
    from openclap_train.evaluate import evaluate
    from openclap_train.report import evaluate_test_sets

    labels = [c.stem.split("-")[-1] for c in CLIPS]
    template = HOSTILE[1]
    # the reference: the pipeline's classify, which fills by fill_template
    ref = mini.classify(CLIPS, [x.replace("_", " ") for x in sorted(set(labels))], template=template)
    expected = float(np.mean([r.label == x.replace("_", " ") for r, x in zip(ref, labels)]))

    waves = [load_audio(str(c), mini.sample_rate) for c in CLIPS]
    sets = [EvalSet("esc", waves, ["a sound"] * len(CLIPS), labels, template=template)]
    torch.manual_seed(0)
    got = evaluate(mini.model, mini.tokenizer, sets, template="{}")
    assert got["val/esc/zeroshot_acc"] == pytest.approx(expected)

    manifest = tmp_path / "test.csv"
    manifest.write_text("path,caption,label\n" + "".join(f"{c},a sound,{x}\n" for c, x in zip(CLIPS, labels)))
    report = evaluate_test_sets(bundled_model_dir("openclap-mini"), {"esc": str(manifest)}, None, [template])
    assert report["esc"][f"zeroshot_acc[{template}]"] == pytest.approx(expected)


def test_trainer_rejects_a_zero_shot_template_without_exactly_one_slot():
    from openclap_train.config import ManifestSpec, TrainConfigError

    with pytest.raises(TrainConfigError, match="exactly once"):
        ManifestSpec(path="x.csv", template="{} and {}")


def test_recipe_extra_captions_fill_columns_by_plain_substitution(tmp_path):
    """A recipe's extra_captions name manifest columns ({label}); anything else in braces is an error
    naming the template, where str.format read attributes ({label.__class__}) or padded ({label:>9})."""
    from openclap_train.config import ManifestSpec
    from openclap_train.data import read_manifest

    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,caption,label,fold\n{CLIPS[2]},waves,sea_waves,4\n")

    def extras(template: str) -> tuple[str, ...]:
        spec = ManifestSpec(path=str(manifest), extra_captions=[template], extra_caption_prob=0.5)
        return read_manifest(spec)[0].extras

    assert extras("<{label}, fold {fold}>") == ("<sea waves, fold 4>",)
    for template in ("{label.__class__}", "{label:>9}", "{label!r}", "{0}", "{label"):
        with pytest.raises(ValueError, match=r"extra caption .* cannot be filled"):
            extras(template)
