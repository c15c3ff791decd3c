"""`openclap demo`: the offline end-to-end tour on the bundled demo corpus and openclap-mini.

Embeds the 17 bundled clips, classifies them zero-shot against three label sets, runs a few free-text
searches, and writes a similarity heatmap (PNG) and a markdown report into an output folder.
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass
from pathlib import Path

from openclap.cli import EXIT_OK, add_model_arguments

DEFAULT_MODEL = "openclap-mini"
TEMPLATE = "the sound of {}"

# The label set each demo clip is classified against (per its source dataset) and how the dataset's
# labels read as words. ESC-10 uses underscores in class names; prompts use the spoken form.
LABEL_SETS: dict[str, list[str]] = {
    "esc10": [
        "dog",
        "rain",
        "sea waves",
        "crying baby",
        "clock tick",
        "sneezing",
        "helicopter",
        "chainsaw",
        "rooster",
        "crackling fire",
    ],
    "fsdd": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
    "instruments": [
        "acoustic grand piano",
        "violin",
        "timpani",
        "trumpet",
        "piccolo",
        "cello",
        "flute",
        "clarinet",
        "snare drum",
        "church organ",
    ],
}
QUERIES = [
    "a dog barking",
    "a man saying the number seven",
    "a bowed violin note",
    "rain falling on the ground",
    "a baby crying",
]


@dataclass
class DemoClip:
    path: Path
    label: str
    dataset: str
    caption: str


def demo_corpus_dir() -> Path:
    """The folder of the demo corpus shipped inside the package."""
    from importlib import resources

    return Path(str(resources.files("openclap") / "assets" / "demo"))


def read_demo_corpus(folder: Path) -> list[DemoClip]:
    """The clips listed in the corpus's manifest.csv."""
    with open(folder / "manifest.csv", newline="") as f:
        return [
            DemoClip(folder / row["path"], row["label"].replace("_", " "), row["dataset"], row["caption"])
            for row in csv.DictReader(f)
        ]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `openclap demo`."""
    parser = subparsers.add_parser(
        "demo",
        help="offline end-to-end demo: zero-shot labels and text search on the bundled clips",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="openclap-demo", help="output folder (default: ./openclap-demo)")
    parser.add_argument(
        "--corpus", default=None, help="a folder with manifest.csv (default: the bundled corpus)"
    )
    add_model_arguments(parser, default_model=DEFAULT_MODEL)
    parser.set_defaults(func=run)


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    return [line, "-" * len(line)] + ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)) for r in rows]


def run(args: argparse.Namespace) -> int:
    """Run the demo and print where its report went."""
    import numpy as np

    import openclap
    from openclap.pipeline import fill_template

    start = time.perf_counter()
    folder = Path(args.corpus) if args.corpus else demo_corpus_dir()
    clips = read_demo_corpus(folder)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model = openclap.load(
        args.model, checkpoint=args.checkpoint, tokenizer=args.tokenizer, device=args.device
    )
    # each set's prompt from the model's templates.json (read by openclap.load), else its "default", else ours
    own = model.templates
    templates = {d: own.get(d, own.get("default", TEMPLATE)) for d in LABEL_SETS}
    report = [f"# openclap demo\n\nModel: `{args.model}` — {len(clips)} clips from `{folder}`.\n"]
    print(f"openclap demo: model {args.model}, {len(clips)} clips")

    audio = model.embed_audio([c.path for c in clips], progress=True)

    # Zero-shot classification, each clip against its dataset's label set.
    rows, correct = [], 0
    for dataset, labels in LABEL_SETS.items():
        members = [i for i, c in enumerate(clips) if c.dataset == dataset]
        if not members:
            continue
        template = templates[dataset]
        text = model.embed_text([fill_template(template, label) for label in labels])
        sims = audio[members] @ text.T
        for row, i in zip(sims, members):
            best = int(np.argmax(row))
            ok = labels[best] == clips[i].label
            correct += ok
            rows.append(
                [
                    clips[i].path.name,
                    dataset,
                    clips[i].label,
                    labels[best],
                    f"{row[best]:.3f}",
                    "yes" if ok else "no",
                ]
            )
    lines = _table(rows, ["clip", "set", "true label", "predicted", "cosine", "right"])
    used = ", ".join(f"{d}: '{templates[d]}'" for d in LABEL_SETS)
    summary = f"zero-shot: {correct} of {len(rows)} right (prompts: {used})"
    print("\n" + "\n".join(lines) + "\n" + summary)
    report += ["## Zero-shot classification\n", summary + "\n", "```", *lines, "```\n"]

    # Free-text search over the corpus.
    queries = model.embed_text(QUERIES)
    scores = model.similarity(audio, queries)  # (clips, queries)
    report.append("## Text search (top 3)\n")
    for q, query in enumerate(QUERIES):
        top = np.argsort(-scores[:, q], kind="stable")[:3]
        hits = [f"{clips[i].path.name} ({scores[i, q]:.3f})" for i in top]
        print(f"\nsearch '{query}':\n  " + "\n  ".join(hits))
        report.append(f"- **{query}**: " + ", ".join(hits))

    heatmap = out / "similarity.png"
    captions = model.embed_text([c.caption for c in clips])
    _write_heatmap(
        model.similarity(audio, captions), [c.path.stem for c in clips], [c.caption for c in clips], heatmap
    )
    report.append(f"\n## Audio-caption similarity\n\n![similarity]({heatmap.name})\n")
    elapsed = time.perf_counter() - start
    report.append(f"Finished in {elapsed:.1f} s.\n")
    (out / "report.md").write_text("\n".join(report))
    print(f"\nopenclap demo: done in {elapsed:.1f} s; report: {out / 'report.md'}, heatmap: {heatmap}")
    return EXIT_OK


def _write_heatmap(sim, rows: list[str], cols: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 9))
    im = ax.imshow(sim, cmap="viridis")
    ax.set_xticks(range(len(cols)), [c[:38] for c in cols], rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_xlabel("caption")
    ax.set_ylabel("clip")
    ax.set_title("openclap demo: cosine similarity of clips (rows) and their captions (columns)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
