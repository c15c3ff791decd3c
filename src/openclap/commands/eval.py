"""`openclap eval`: zero-shot classification, retrieval and linear-probe benchmarks, alone or as a suite.

Exit codes: 0 all files evaluated; 1 some files were missing or unreadable (they were excluded and the
report says how many); 2 usage errors (unknown dataset, bad layout, bad template, ...).
"""

from __future__ import annotations

import argparse
import sys

from openclap.cli import (
    EXIT_FAILED_INPUTS,
    EXIT_OK,
    DeprecatedAlias,
    UsageError,
    add_model_arguments,
    add_progress_argument,
    progress_enabled,
)

DEFAULT_TEMPLATE = "this is the sound of {}"


def _dataset_names() -> list[str]:
    from openclap.eval.datasets import DATASETS

    return sorted(DATASETS)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=8, help="audio windows per model call (default 8)")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="audio-embedding cache folder (default $OPENCLAP_CACHE_DIR or ~/.cache/openclap/embeddings)",
    )
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    parser.add_argument(
        "--json", action="store_true", help="print the results as JSON on stdout (see docs/evaluation.md)"
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="write results.json, results.md (with the paper's numbers) and PNGs into DIR",
    )
    add_progress_argument(parser)
    add_model_arguments(parser)


def _dataset_args(parser: argparse.ArgumentParser, *, label_column: bool = True) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--dataset", help="a dataset in its publisher's layout: " + ", ".join(_dataset_names())
    )
    source.add_argument("--manifest", help="CSV/JSONL with 'path' and 'label' | 'labels' | 'caption' columns")
    parser.add_argument("--root", help="the dataset's folder (with --dataset)")
    parser.add_argument(
        "--split", default=None, help="split to evaluate (dataset-specific; manifests: the 'split' column)"
    )
    if label_column:
        parser.add_argument(
            "--label-column", default=None, help="manifest column holding the labels (default: label, labels)"
        )
        parser.add_argument(
            "--label-separator", default=",", help="separator of a 'labels' cell (default ',')"
        )
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N", help="evaluate N evenly spaced items only"
    )


def _template_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--template", default=None, help=f"prompt with {{}} for the class name (default {DEFAULT_TEMPLATE!r})"
    )
    group.add_argument(
        "--templates",
        default=None,
        metavar="FILE",
        help="file with one template per line; each class's prompt embeddings are averaged",
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `openclap eval` and its subcommands."""
    parser = subparsers.add_parser(
        "eval",
        help="benchmarks: zero-shot classification, retrieval, linear probe, suites",
        description="Evaluate a model on datasets in their publishers' layouts or on manifests.",
    )
    sub = parser.add_subparsers(dest="eval_command", metavar="EVAL")
    zs = sub.add_parser("zeroshot", help="zero-shot classification (accuracy, or mAP for multi-label)")
    _dataset_args(zs)
    _template_args(zs)
    _common(zs)
    rt = sub.add_parser("retrieval", help="text-to-audio and audio-to-text retrieval (R@1/5/10, mAP@10)")
    _dataset_args(rt, label_column=False)
    _common(rt)
    lp = sub.add_parser(
        "linear-probe", help="logistic regression on frozen embeddings (mean ± std over folds)"
    )
    _dataset_args(lp)
    lp.add_argument(
        "--train-split", default=None, help="train on this split (with --test-split) instead of folds"
    )
    lp.add_argument("--test-split", default=None, help="test on this split")
    lp.add_argument(
        "--num-folds",
        type=int,
        default=5,
        help="stratified folds when the dataset has no official ones (default 5); a dataset's official folds, "
        "or a manifest's 'fold' column, take precedence",
    )
    lp.add_argument("--folds", dest="num_folds", type=int, action=DeprecatedAlias, new="--num-folds")
    lp.add_argument("--weight-decay", type=float, default=1e-3, help="L2 penalty of the probe (default 1e-3)")
    _common(lp)
    ds = sub.add_parser("datasets", help="list the dataset adapters: name, task, download page, layout")
    ds.add_argument("--json", action="store_true", help="print the list as JSON")
    ds.set_defaults(func=run_datasets)
    su = sub.add_parser("suite", help="several evaluations from a TOML/JSON/YAML file -> one report")
    su.add_argument("--config", required=True, help="suite file (see configs/eval/)")
    _common(su)
    su.set_defaults(model=None)  # the suite file's model, unless --model is given
    for p in (zs, rt, lp, su):
        p.set_defaults(func=run)
    from openclap.caption.evaluate import add_captioning_parser  # light: imports neither torch nor numpy

    add_captioning_parser(sub)
    parser.set_defaults(func=lambda args: _help(parser))


def run_datasets(args: argparse.Namespace) -> int:
    """Print the registered dataset adapters."""
    import json

    from openclap.eval.datasets import DATASETS

    entries = [
        {
            "name": name,
            "task": cls.task,
            "splits": list(cls.splits),
            "homepage": cls.homepage,
            "layout": cls.layout,
        }
        for name, cls in sorted(DATASETS.items())
    ]
    if args.json:
        print(json.dumps(entries, indent=2))
        return EXIT_OK
    for e in entries:
        splits = f"  splits: {', '.join(e['splits'])}" if e["splits"] else ""
        print(f"{e['name']}  ({e['task']}){splits}\n  download: {e['homepage']}")
        print("  " + e["layout"].replace("\n", "\n  ") + "\n")
    return EXIT_OK


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _task_from_args(args: argparse.Namespace, kind: str) -> object:
    from openclap.eval.suite import SuiteTask
    from openclap.eval.zero_shot import check_templates, read_templates

    if args.dataset is not None and args.root is None:
        raise UsageError(f"--dataset {args.dataset} needs --root PATH (the folder the dataset unpacks to)")
    if args.manifest is not None and args.root is not None:
        raise UsageError(
            "--root is for --dataset; a manifest's relative paths are relative to its own folder"
        )
    templates = [DEFAULT_TEMPLATE]
    if getattr(args, "templates", None):
        templates = read_templates(args.templates)
    elif getattr(args, "template", None):
        templates = [args.template]
    check_templates(templates)
    label_column = getattr(args, "label_column", None)
    if kind == "retrieval" and args.manifest is not None:
        label_column = "caption"  # a manifest may have both 'label' and 'caption' columns
    return SuiteTask(
        eval=kind,
        dataset=args.dataset or "manifest",
        root=args.root,
        manifest=args.manifest,
        split=args.split,
        label_column=label_column,
        label_separator=getattr(args, "label_separator", ","),
        templates=templates,
        train_split=getattr(args, "train_split", None),
        test_split=getattr(args, "test_split", None),
        num_folds=getattr(args, "num_folds", 5),
        weight_decay=getattr(args, "weight_decay", 1e-3),
        limit=args.limit,
    )


def run(args: argparse.Namespace) -> int:
    """Run the chosen evaluation(s), print a table or JSON, write the report."""
    import json
    from pathlib import Path

    import openclap
    from openclap.eval.cache import EmbeddingCache, default_cache_dir, pipeline_fingerprint
    from openclap.eval.report import build_payload, dumps, format_table, write_report
    from openclap.eval.runner import load_task_dataset, run_task
    from openclap.eval.suite import load_suite

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    progress = progress_enabled(args)
    model_name, checkpoint, tokenizer = args.model, args.checkpoint, args.tokenizer
    if args.eval_command == "suite":
        suite = load_suite(args.config)
        tasks = suite.tasks
        # The suite's model is used unless --model was given.
        if model_name is None:
            model_name = suite.model or "openclap-mini"
            checkpoint, tokenizer = checkpoint or suite.checkpoint, tokenizer or suite.tokenizer
    else:
        tasks = [_task_from_args(args, args.eval_command)]
    for task in tasks:  # read every dataset's metadata first: a wrong --root fails before any model work
        load_task_dataset(task)
    pipeline = openclap.load(model_name, checkpoint=checkpoint, tokenizer=tokenizer, device=args.device)
    fingerprint = pipeline_fingerprint(pipeline)
    cache = None if args.no_cache else EmbeddingCache(args.cache_dir or default_cache_dir(), fingerprint)
    results = []
    try:
        for task in tasks:
            results.append(
                run_task(
                    pipeline,
                    task,
                    cache=cache,
                    batch_size=args.batch_size,
                    progress=progress,
                    device=args.device,
                )
            )
    finally:
        if cache is not None:
            cache.close()
    model_info = {
        "name": str(model_name),
        "checkpoint": str(checkpoint) if checkpoint else None,
        "fingerprint": fingerprint,
    }
    if pipeline.random_weights:  # asked for explicitly (e.g. --model tiny): the numbers mean nothing
        model_info["random_weights"] = True
    payload = build_payload(results, model_info)
    if args.out:
        written = write_report(args.out, payload, results)
        payload = json.loads(Path(written[0]).read_text())
        print(f"openclap eval: wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    if args.json:
        print(dumps(payload))
    else:
        print(format_table(payload["results"]))
    excluded = sum(r["excluded"]["count"] for r in payload["results"])
    if excluded:
        print(
            f"openclap eval: {excluded} file(s) were missing or unreadable and excluded (see the report)",
            file=sys.stderr,
        )
        return EXIT_FAILED_INPUTS
    return EXIT_OK
