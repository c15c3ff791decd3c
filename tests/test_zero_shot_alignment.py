"""Zero-shot scores line up with their targets: ``scores[k]``, ``targets[k]`` and ``evaluated[k]`` describe
the same clip, and the metrics are those of that alignment (openclap-mini on the bundled demo clips, whose
answers it knows; one unreadable file in the middle makes ``evaluated`` differ from ``arange``)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import openclap
from openclap.eval.datasets.manifest import Manifest
from openclap.eval.zero_shot import class_text_embeddings, zero_shot
from openclap.registry import bundled_model_dir

DEMO = Path(openclap.__file__).parent / "assets" / "demo"


@pytest.fixture(scope="module")
def mini():
    return openclap.load("openclap-mini")


@pytest.fixture(scope="module")
def esc_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 10 ESC-10 demo clips (one per class) and a corrupt file third: a label manifest."""
    root = tmp_path_factory.mktemp("zs")
    with open(DEMO / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["dataset"] == "esc10"]
    for r in rows:
        shutil.copyfile(DEMO / r["path"], root / r["path"])
    (root / "broken.flac").write_bytes(b"fLaC not really")
    listed = [(r["path"], r["label"]) for r in rows]
    listed.insert(2, ("broken.flac", "dog"))
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(listed)
    return root / "manifest.csv"


def test_scores_targets_and_evaluated_describe_the_same_clip(mini, esc_manifest: Path) -> None:
    template = json.loads((bundled_model_dir("openclap-mini") / "templates.json").read_text())["esc10"]
    ds = Manifest().load(esc_manifest)
    result = zero_shot(mini, ds, [template])
    assert result.evaluated.tolist() == [0, 1, *range(3, 11)]  # the broken file (index 2) is excluded

    text = class_text_embeddings(mini, ds.class_names, [template])
    for k, i in enumerate(result.evaluated):
        item = ds.items[i]
        assert result.targets[k] == item.labels[0]
        assert ds.classes[item.labels[0]] == Path(item.path).stem.split("-A-")[1]  # the file's own class
        np.testing.assert_allclose(
            result.scores[k], mini.embed_audio([str(item.path)])[0] @ text.T, atol=1e-5
        )

    hits = np.argmax(result.scores, axis=1) == result.targets
    assert result.metrics["accuracy"] == pytest.approx(hits.mean())
    assert np.trace(result.confusion) == hits.sum() and result.confusion.sum() == 10
    # openclap-mini knows these clips (docs/openclap-mini.md: ESC-10 test accuracy 75 %): chance is 10 %.
    assert hits.sum() >= 6, f"only {hits.sum()}/10 ESC-10 demo clips right"


def test_multi_label_zero_shot_lines_up_and_scores_map_by_hand(mini, esc_manifest: Path) -> None:
    """A multi-label set (each demo clip tagged with its class and, for even clips, also "rain"): targets are
    the items' tags, scores the clip-prompt cosines, and mAP the mean AP recomputed per class here."""
    from openclap.eval.datasets.base import MULTI_LABEL, EvalDataset, EvalItem

    single = Manifest().load(esc_manifest)
    rain = single.classes.index("rain")
    items = [
        EvalItem(path=it.path, labels=(it.labels[0],) + ((rain,) if i % 2 == 0 and it.labels[0] != rain else ()),
                 key=it.key)
        for i, it in enumerate(single.items)
    ]  # fmt: skip
    ds = EvalDataset("tags", MULTI_LABEL, single.root, items, classes=single.classes)
    result = zero_shot(mini, ds, ["this is the sound of {}"])
    assert result.evaluated.tolist() == [0, 1, *range(3, 11)]
    text = class_text_embeddings(mini, ds.class_names, ["this is the sound of {}"])
    targets = np.zeros((10, len(ds.classes)), dtype=int)
    for k, i in enumerate(result.evaluated):
        targets[k, list(items[i].labels)] = 1
        np.testing.assert_allclose(
            result.scores[k], mini.embed_audio([str(items[i].path)])[0] @ text.T, atol=1e-5
        )
    np.testing.assert_array_equal(result.targets, targets)
    from openclap.eval.metrics import average_precision

    aps = [average_precision(result.scores[:, c], targets[:, c]) for c in range(len(ds.classes))]
    assert result.metrics["mAP"] == pytest.approx(np.nanmean(aps))
    assert result.per_class["rain"]["support"] == int(targets[:, rain].sum()) > 1
    assert result.confusion is None
