"""``core-rerank detect`` and the ``heads plot`` / ``heads select`` actions (see docs/detection.md)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from ..detection import (
    DEFAULT_TEMPERATURE,
    DetectionDataError,
    ExampleSet,
    HeadScoreTable,
    beir_examples,
    detect_heads,
    read_jsonl_examples,
)
from ..errors import InputError
from ..head_config import HeadConfig, preset_dir, preset_names
from .options import add_model_arguments, set_threads


def register(commands: Any) -> None:
    """Add the ``detect`` command."""
    p = commands.add_parser(
        "detect",
        help="find CoRe or QR heads for a model on detection data",
        description="Score every attention head on queries with a positive and hard negatives, "
        "and write the top heads as a head config (plus the full score table).",
    )
    add_model_arguments(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="JSONL(.gz) in the CoRe/ICR layout (question + flagged paragraphs)")
    source.add_argument("--beir", help="BEIR folder (corpus, queries, qrels/<split>.tsv)")
    p.add_argument("--split", default="train", help="qrels split of --beir (default: train)")
    p.add_argument("--run", help="TREC run file for --beir hard negatives (default: BM25 over the corpus)")
    p.add_argument("--bm25-depth", type=int, default=100, help="BM25 depth for --beir negatives")
    p.add_argument("--negatives", type=int, help="hard negatives per query (default: all in --data, 9 for --beir)")
    p.add_argument("--method", default="core", choices=["core", "qr"], help="how heads are ranked")
    p.add_argument(
        "--temperature",
        default=str(DEFAULT_TEMPERATURE),
        help="CoRe temperature, or a comma list to sweep (with --select-on)",
    )
    p.add_argument(
        "--num-heads", default="8", help="heads to keep, or a comma list to sweep (with --select-on); default 8"
    )
    p.add_argument(
        "--num-layers-to-keep",
        type=int,
        help="build, score and select only in the first N layers (pruning-aware selection); default: every layer",
    )
    p.add_argument(
        "--positions",
        type=int,
        default=1,
        help="use each example with the positive at N slots spread over the list (1: random slot)",
    )
    p.add_argument("--limit", type=int, help="use the first N usable examples")
    p.add_argument("--batch-size", type=int, default=1, help="prompts per forward pass")
    p.add_argument(
        "--qr-calibration",
        action="store_true",
        help="QR scores minus the N/A query's (QRHead's release); off: the CoRe paper's QR-R",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", help="name of the head config written")
    p.add_argument("--out", required=True, help="head config JSON to write (loads with --heads / heads=)")
    p.add_argument("--scores", help="per-head score table JSON (default: <out>.scores.json)")
    p.add_argument(
        "--official-scores",
        help="also write the ranking scores alone, {'layer-head': score} (the official release layout)",
    )
    p.add_argument("--plot", help="layer x head heatmap PNG (needs matplotlib)")
    p.add_argument(
        "--select-on", help="BEIR folder: pick the temperature and --num-heads by nDCG@10 of the heads on it"
    )
    p.add_argument("--select-split", default="test")
    p.add_argument("--select-depth", type=int, default=20, help="candidates reranked per query")
    p.add_argument("--select-queries", type=int, default=50, help="first N queries of --select-on (0: all)")
    p.add_argument("--curve", help="comma list of head counts: nDCG@10 of the top heads on --select-on (Figure 1)")
    p.add_argument("--curve-plot", help="PNG of nDCG@10 against the number of heads (with --curve)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_detect)


def register_heads_actions(heads_group: Any) -> None:
    """Add ``heads plot`` and ``heads select`` to the ``heads`` group (``cli.heads.register``)."""
    q = heads_group.add_parser("plot", help="layer x head heatmap of a score table or detected config")
    q.add_argument(
        "source",
        help="score table JSON, official 'layer-head' score file, or a detected head config (file or preset name)",
    )
    q.add_argument("--out", required=True, help="PNG to write")
    q.add_argument(
        "--method", choices=["core", "qr", "qr_calibrated", "top1"], help="which scores (default: the file's)"
    )
    q.add_argument("--temperature", type=float, help="CoRe temperature of the table to plot")
    q.add_argument("--num-heads", type=int, default=8, help="mark the best N heads (0: none); default 8")
    q.add_argument("--title")
    q.set_defaults(func=run_heads_plot)

    r = heads_group.add_parser("select", help="the best heads of a detection score table as a head config")
    r.add_argument("table", help="score table JSON written by `core-rerank detect` (or an official score file)")
    r.add_argument("--method", choices=["core", "qr"], help="rank by CoRe or QR scores (default: the table's)")
    r.add_argument("--temperature", type=float, help="CoRe temperature (default: the table's)")
    r.add_argument("--num-heads", type=int, default=8, help="heads to keep (default 8)")
    r.add_argument("--num-layers-to-keep", type=int, help="choose only in the first N layers (pruning-aware)")
    r.add_argument("--name", help="name of the head config")
    r.add_argument("--out", required=True, help="head config JSON to write")
    r.set_defaults(func=run_heads_select)


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"expected a number or a comma list of numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"expected an integer or a comma list of integers, got {text!r}") from None


def _command_line(args: argparse.Namespace) -> str:
    """The detect command with every option that shaped the result (reproducible)."""
    parts = ["core-rerank", "detect", "--model", args.model]
    if args.data:
        parts += ["--data", args.data]
    else:
        parts += ["--beir", args.beir, "--split", args.split]
        parts += ["--run", args.run] if args.run else ["--bm25-depth", str(args.bm25_depth)]
    for flag, value in (
        ("--negatives", args.negatives),
        ("--method", args.method),
        ("--temperature", args.temperature),
        ("--num-heads", args.num_heads),
        ("--num-layers-to-keep", args.num_layers_to_keep),
        ("--positions", args.positions),
        ("--limit", args.limit),
        ("--max-doc-words", args.max_doc_words),
        ("--batch-size", args.batch_size),
        ("--seed", args.seed),
        ("--dtype", args.dtype),
        ("--device", args.device),
        ("--name", args.name),
        ("--select-on", args.select_on),
    ):
        if value is not None:
            parts += [flag, str(value)]
    if args.select_on:
        parts += [
            "--select-split",
            args.select_split,
            "--select-depth",
            str(args.select_depth),
            "--select-queries",
            str(args.select_queries),
        ]
    if args.qr_calibration:
        parts.append("--qr-calibration")
    parts += ["--out", args.out]
    return shlex.join(parts)


def run_detect(args: argparse.Namespace) -> int:
    """``core-rerank detect``: detect heads, optionally choose among settings, write the config and table."""
    temps, head_counts, scores_path = _checked_detect_args(args)
    data = _read_examples(args)

    from .. import loading
    from ..reranker import CoReReranker

    set_threads(args)
    source = loading.resolve_source(args.model)
    # ICR with num_layers_to_keep=None builds every layer.
    reranker = CoReReranker.from_pretrained(
        args.model,
        method="icr",
        num_layers_to_keep=args.num_layers_to_keep,
        device=args.device,
        dtype=args.dtype,
        max_doc_words=args.max_doc_words,
    )
    table = _detect(args, reranker, data, temps, list(source.model_ids))
    chosen_t, chosen_num_heads = (temps[0] if args.method == "core" else None), head_counts[0]
    if args.select_on:
        chosen_t, chosen_num_heads = _select(args, table, reranker, temps, head_counts)
    if args.curve:
        _ndcg_curve(args, table, reranker, source.model_ids[0])
    _write_outputs(args, table, scores_path, chosen_t, chosen_num_heads)
    return 0


def _checked_detect_args(args: argparse.Namespace) -> tuple[list[float], list[int], str]:
    """(temperatures, head counts, score table path), after refusing options that do not combine."""
    temps = _floats(args.temperature)
    head_counts = _ints(args.num_heads)
    if not head_counts or min(head_counts) < 1:
        raise InputError("--num-heads must be positive")
    if (len(temps) > 1 or len(head_counts) > 1) and not args.select_on:
        raise InputError("several --temperature or --num-heads values need --select-on DIR to choose among them")
    if args.curve and not args.select_on:
        raise InputError("--curve needs --select-on DIR (the data to evaluate on)")
    scores_path = _scores_path(args.out, args.scores)
    if args.select_on and not Path(args.select_on).is_dir():
        raise FileNotFoundError(f"--select-on: no BEIR folder {args.select_on}")
    if args.plot or args.curve_plot:
        from ..plotting import pyplot

        pyplot()  # fail now, not after the detection pass
    return temps, head_counts, scores_path


def _read_examples(args: argparse.Namespace) -> ExampleSet:
    """The detection examples of ``--data`` or ``--beir`` (their summary logged; none is an error)."""
    if args.data:
        data = read_jsonl_examples(args.data, limit=args.limit, negatives=args.negatives)
    else:
        data = beir_examples(
            args.beir, args.split, negatives=args.negatives or 9, run=args.run, depth=args.bm25_depth, limit=args.limit
        )
    _log(data.summary())
    if not data.examples:
        raise DetectionDataError(f"no usable examples in {data.source}")
    return data


def _detect(
    args: argparse.Namespace, reranker: Any, data: ExampleSet, temps: list[float], model_ids: list[str]
) -> HeadScoreTable:
    """Score every head on ``data`` (the command line kept as provenance) and log the time taken."""
    extra = {"command": _command_line(args)}
    if Path(sys.argv[0]).name == "core-rerank":
        extra["argv"] = shlex.join(["core-rerank", *sys.argv[1:]])
    table = detect_heads(
        reranker,
        data,
        method=args.method,
        temperature=temps,
        positions=args.positions,
        num_layers_to_keep=args.num_layers_to_keep,
        batch_size=args.batch_size,
        qr_calibration=args.qr_calibration,
        seed=args.seed,
        progress=not args.no_progress,
        model_ids=model_ids,
        provenance=extra,
    )
    stats = table.stats
    _log(
        f"{table.num_prompts} prompts ({stats['prompt_tokens_mean']:.0f} tokens on average) in "
        f"{stats['seconds']:.1f} s: {stats['seconds_per_prompt']:.3f} s per prompt on {stats['device']}"
    )
    return table


def _select(
    args: argparse.Namespace, table: HeadScoreTable, reranker: Any, temps: list[float], head_counts: list[int]
) -> tuple[float | None, int]:
    """``--select-on``: the temperature and head count with the best nDCG@10 (recorded in ``table``)."""
    from ..evaluation.head_selection import sweep

    _log(f"selecting on {args.select_on} ({args.select_split}, depth {args.select_depth}):")
    result = sweep(
        table,
        reranker.model,
        reranker.tokenizer,
        args.select_on,
        temperatures=temps if args.method == "core" else None,
        num_heads=head_counts,
        num_layers_to_keep=args.num_layers_to_keep,
        split=args.select_split,
        depth=args.select_depth,
        max_queries=args.select_queries or None,
        max_doc_words=args.max_doc_words,
        log=_log,
    )
    chosen_t, chosen_num_heads = result["temperature"], result["num_heads"]
    table.provenance["sweep"] = result
    if args.method == "core":
        table.temperature = chosen_t
    _log(f"chosen: t={chosen_t} num_heads={chosen_num_heads} (nDCG@10 {result['ndcg@10']:.4f})")
    return chosen_t, chosen_num_heads


def _ndcg_curve(args: argparse.Namespace, table: HeadScoreTable, reranker: Any, model_id: str) -> None:
    """``--curve``: nDCG@10 of the top-N heads (and of all heads) on ``--select-on``, recorded and plotted."""
    from ..evaluation.head_selection import evaluate_configs

    curve = _ints(args.curve)
    configs = [table.top_heads(n, num_layers_to_keep=args.num_layers_to_keep) for n in curve]
    icr = HeadConfig(method="icr", name="icr-all-heads")
    values = evaluate_configs(
        reranker.model,
        reranker.tokenizer,
        configs + [icr],
        args.select_on,
        args.select_split,
        args.select_depth,
        args.select_queries or None,
        args.max_doc_words,
        model_id,
    )
    table.provenance["ndcg_vs_k"] = {
        "data": args.select_on,
        "split": args.select_split,
        "depth": args.select_depth,
        "max_queries": args.select_queries or None,
        "points": {str(n): round(v, 5) for n, v in zip(curve, values)},
        "all_heads_icr": round(values[-1], 5),
    }
    for n, v in zip(curve, values):
        _log(f"  top-{n}: nDCG@10 {v:.4f}")
    _log(f"  all heads (ICR): {values[-1]:.4f}")
    if args.curve_plot:
        from ..plotting import plot_ndcg_vs_num_heads

        plot_ndcg_vs_num_heads(
            dict(zip(curve, values)),
            args.curve_plot,
            references={"all heads (ICR)": values[-1]},
            title=f"{model_id}: top {'CoRe' if args.method == 'core' else 'QR'} heads "
            f"on {Path(args.select_on).name} {args.select_split}",
        )
        _log(f"wrote {args.curve_plot}")


def _write_outputs(
    args: argparse.Namespace,
    table: HeadScoreTable,
    scores_path: str,
    chosen_t: float | None,
    chosen_num_heads: int,
) -> None:
    """Write the head config, score table and asked-for extras, then print the chosen heads."""
    config = table.top_heads(
        chosen_num_heads, num_layers_to_keep=args.num_layers_to_keep, temperature=chosen_t, name=args.name
    )
    config.to_json(args.out)
    table.to_json(scores_path)
    _log(f"wrote {args.out} ({len(config.heads)} {config.method.upper()} heads) and {scores_path}")
    if args.official_scores:
        table.to_official_json(args.official_scores, temperature=chosen_t)
        _log(f"wrote {args.official_scores}")
    if args.plot:
        table.plot(
            args.plot, temperature=chosen_t, num_heads=chosen_num_heads, num_layers_to_keep=args.num_layers_to_keep
        )
        _log(f"wrote {args.plot}")
    scores = table.values(temperature=chosen_t)
    print(f"{config.method} heads ({table.key(temperature=chosen_t)}), best first:")
    for layer, head in config.heads:
        print(f"  ({layer:>2},{head:>2})  {scores[layer, head]:.4f}")


def _log(text: str) -> None:
    print(text, file=sys.stderr)


def _scores_path(out: str, scores: str | None) -> str:
    """Where the score table goes: ``--scores``, else ``<out>.scores.json`` beside the config.

    Never inside the shipped presets folder: every JSON there is read as a head config.
    """
    path = Path(scores) if scores else Path(str(Path(out).with_suffix("")) + ".scores.json")
    try:
        presets = Path(str(preset_dir())).resolve()
    except (TypeError, OSError):
        return str(path)
    if path.resolve().parent == presets:
        raise InputError(
            f"the score table would be written to {path}, inside the preset folder, where "
            "every JSON file must be a head config; give --scores PATH elsewhere"
        )
    return str(path)


def run_heads_select(args: argparse.Namespace) -> int:
    table = HeadScoreTable.from_json(Path(args.table).expanduser())
    parts = ["core-rerank", "heads", "select", args.table, "--num-heads", str(args.num_heads)]
    for flag, value in (
        ("--method", args.method),
        ("--temperature", args.temperature),
        ("--num-layers-to-keep", args.num_layers_to_keep),
        ("--name", args.name),
    ):
        if value is not None:
            parts += [flag, str(value)]
    parts += ["--out", args.out]
    config = table.top_heads(
        args.num_heads,
        num_layers_to_keep=args.num_layers_to_keep,
        method=args.method,
        temperature=args.temperature,
        name=args.name,
        select_command=shlex.join(parts),
    )
    config.to_json(args.out)
    values = table.values(args.method, args.temperature)
    print(
        f"wrote {args.out}: {config.method} heads, best first: "
        + " ".join(f"({layer},{head}) {values[layer, head]:.4f}" for layer, head in config.heads)
    )
    return 0


def run_heads_plot(args: argparse.Namespace) -> int:
    source = args.source
    if not Path(source).expanduser().is_file() and source in preset_names():
        table = HeadScoreTable.from_dict(HeadConfig.load(source).to_dict())
    else:
        table = HeadScoreTable.from_json(Path(source).expanduser())
    table.plot(args.out, method=args.method, temperature=args.temperature, num_heads=args.num_heads, title=args.title)
    print(f"wrote {args.out}")
    return 0
