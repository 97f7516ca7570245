"""Re-print every table of docs/results.md from the committed JSON and compare with the doc.

    python scripts/check_results_tables.py [--doc docs/results.md]

Nothing is recomputed: each cell is read from ``results/*.json`` (through
``core_rerank.evaluation.read_results``, which also reads format-version-1 files) and formatted
as the doc writes it (nDCG@10 x 100, seconds, MB). A number matches when it is the JSON value
rounded to the doc's digits (half up or half even). Prose cells (row names, "shared pass") are
compared as text; a few structured prose lines (the Gemma summary and sweep, the DL19 depth-40
pruning line, the SciFact pass times) are checked too. Exit status 1 and a list of differences
when anything does not match; also fails when the doc has a table this script does not know.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core_rerank.evaluation import read_results  # noqa: E402
from core_rerank.evaluation.report import layers_needed  # noqa: E402

Cell = str | frozenset | None  # exact text, any of several texts, or not checked


# ---------------------------------------------------------------------- reading
@cache
def results(name: str) -> dict[str, Any]:
    return read_results(ROOT / "results" / name)


def entry(name: str, label: str) -> dict[str, Any]:
    return results(name)["entries"][label]


def summary(name: str, label: str) -> dict[str, Any]:
    return entry(name, label)["summary"]


# ---------------------------------------------------------------------- formatting
def num(value: float, digits: int, scale: int = 1) -> frozenset:
    """``value * scale`` rounded to ``digits`` decimals, half up or half even."""
    exact = Decimal(str(value)) * scale
    quantum = Decimal(1).scaleb(-digits)
    return frozenset(str(exact.quantize(quantum, rounding=mode)) for mode in (ROUND_HALF_UP, ROUND_HALF_EVEN))


def cat(*parts: Cell) -> frozenset:
    """Every concatenation of the parts' alternatives."""
    options = [[p] if isinstance(p, str) else sorted(p) for p in parts]  # type: ignore[arg-type]
    return frozenset("".join(combo) for combo in itertools.product(*options))


def join(parts: Sequence[Cell], sep: str) -> frozenset:
    pieces: list[Cell] = []
    for i, part in enumerate(parts):
        if i:
            pieces.append(sep)
        pieces.append(part)
    return cat(*pieces)


def x100(value: float, digits: int) -> frozenset:
    return num(value, digits, 100)


def seconds(value: float) -> frozenset:
    return cat(num(value, 2), " s")


def megabytes(value: float, unit: str = "MB") -> frozenset:
    return cat(num(value, 0), f" {unit}")


def heads_text(heads: Iterable[Sequence[int]]) -> str:
    return " ".join(f"({layer},{head})" for layer, head in heads)


def added_heads(name: str, label: str, before: str | None) -> str:
    """The heads of ``label`` not in ``before`` (in order), as the sweep table writes them."""
    heads = entry(name, label)["heads"]["heads"]
    if before is None:
        return heads_text(heads)
    old = {tuple(h) for h in entry(name, before)["heads"]["heads"]}
    return "+ " + heads_text(h for h in heads if tuple(h) not in old)


def layers(name: str, label: str) -> str:
    return str(layers_needed(entry(name, label), results(name)["settings"]))


def all_heads(name: str) -> int:
    settings = results(name)["settings"]
    return int(settings["num_attention_heads"] * settings["num_hidden_layers"])


def num_heads(name: str, label: str) -> int:
    return len(entry(name, label)["heads"]["heads"])


# ---------------------------------------------------------------------- the tables
def summary_table() -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for title, name in (
        ("TREC DL19 (43 q), depth 20", "dl19_depth20_w80.json"),
        ("TREC DL19 (43 q), depth 40", "dl19_depth40_w80.json"),
        ("SciFact test (300 q), depth 20", "scifact_depth20_w80.json"),
        ("SciFact test (300 q), depth 40", "scifact_depth40_w80.json"),
    ):
        labels = ["first-stage", "icr", "qr", "core", "core[scifact-train]"]
        rows.append(
            [title]
            + [
                x100(summary(name, label)["ndcg@10"], 1) if label in results(name)["entries"] else "-"
                for label in labels
            ]
        )
    return rows


def main_table(name: str, labels_names: Sequence[tuple[str, str]], columns: str) -> list[list[Cell]]:
    """Rows of the per-run tables: ``columns`` picks from nmrRtdpLq (nDCG, MRR, recall, time, docs/s,
    peak, layers, queries)."""
    depth = results(name)["settings"]["depth"]
    rows: list[list[Cell]] = []
    table_name = name
    for label, title in labels_names:
        # "file.json::label": a row from another run of the same data and depth
        name, label = label.split("::") if "::" in label else (table_name, label)
        e, s = entry(name, label), summary(name, label)
        first = e["method"] == "first-stage"
        cells: list[Cell] = [title]
        for column in columns:
            if column == "n":
                cells.append(x100(s["ndcg@10"], 2))
            elif column == "m":
                cells.append(x100(s["mrr@10"], 2))
            elif column == "R":
                cells.append(x100(s[f"recall@{depth}"], 2))
            elif column == "t":
                cells.append(
                    "-" if first else cat(seconds(s["time_per_query_s"]), " (shared pass)" if e.get("one_pass") else "")
                )
            elif column == "d":
                cells.append("-" if first else num(s["docs_per_s"], 2))
            elif column == "p":
                cells.append("-" if first else megabytes(s["peak_mem_mb"]))
            elif column == "L":
                cells.append("-" if first else layers(name, label))
            elif column == "q":
                cells.append(f"{s['queries']}/{s['of_queries']}")
        rows.append(cells)
    return rows


def main_methods(
    name: str, core_title: str = "CoRe-R (8 CoRe heads)", extra: Sequence[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    return [
        ("first-stage", "BM25 (first stage)"),
        ("icr", f"ICR (all {all_heads(name)} heads)"),
        ("qr", f"QR-R ({num_heads(name, 'qr')} QR heads)"),
        ("core", core_title),
        *extra,
    ]


def dl19_sweep_table() -> list[list[Cell]]:
    name = "dl19_depth20_w80_sweeps.json"

    def s(label: str) -> dict[str, Any]:
        return summary(name, label)

    def shared(label: str, title: str, heads: Cell) -> list[Cell]:
        return [title, x100(s(label)["ndcg@10"], 2), "shared pass", "", layers(name, label), heads]

    def own(label: str, title: str, heads: Cell) -> list[Cell]:
        return [
            title,
            x100(s(label)["ndcg@10"], 2),
            seconds(s(label)["time_per_query_s"]),
            megabytes(s(label)["peak_mem_mb"]),
            layers(name, label),
            heads,
        ]

    core = [f"core@num_heads={n}" for n in (1, 2, 4, 8, 16, 32, 64)]
    qr = [f"qr@num_heads={n}" for n in (1, 2, 4, 8, 16, 32, 64)]
    prune = [f"qr@prune={p}" for p in ("0.3", "0.5", "0.7")]
    return [
        ["BM25", x100(s("first-stage")["ndcg@10"], 2), "-", "-", "-", "-"],
        own("icr", "ICR", f"all {all_heads(name)}"),
        shared(core[0], "CoRe-R top 1", added_heads(name, core[0], None)),
        shared(core[1], "CoRe-R top 2", added_heads(name, core[1], core[0])),
        shared(core[2], "CoRe-R top 4", added_heads(name, core[2], core[1])),
        own(core[3], "CoRe-R top 8 (the preset)", added_heads(name, core[3], core[2])),
        shared(core[4], "CoRe-R top 16", ""),
        shared(core[5], "CoRe-R top 32", ""),
        shared(core[6], "CoRe-R top 64", ""),
        [
            "QR-R top 1, 2, 4",
            join([x100(s(label)["ndcg@10"], 2) for label in qr[:3]], ", "),
            "shared pass",
            "",
            layers(name, qr[0]) if len({layers(name, label) for label in qr[:3]}) == 1 else "?",
            ", ".join(
                [added_heads(name, qr[0], None), added_heads(name, qr[1], qr[0]), added_heads(name, qr[2], qr[1])]
            ),
        ],
        own(qr[3], "QR-R top 8 (the preset)", added_heads(name, qr[3], qr[2])),
        [
            "QR-R top 16, 32, 64",
            join([x100(s(label)["ndcg@10"], 2) for label in qr[4:]], ", "),
            "shared pass",
            "",
            ", ".join(layers(name, label) for label in qr[4:]),
            "",
        ],
        *(
            own(
                f"core@prune={p}", f"CoRe-R pruned {pct}%", heads_text(entry(name, f"core@prune={p}")["heads"]["heads"])
            )
            for p, pct in (("0.3", 30), ("0.5", 50), ("0.7", 70))
        ),
        [
            "QR-R pruned 30 / 50 / 70%",
            x100(s(prune[0])["ndcg@10"], 2) if len({s(label)["ndcg@10"] for label in prune}) == 1 else "?",
            cat(join([num(s(label)["time_per_query_s"], 2) for label in prune], " / "), " s"),
            cat(join([num(s(label)["peak_mem_mb"], 0) for label in prune], " / "), " MB"),
            " / ".join(layers(name, label) for label in prune),
            f"the preset's {num_heads(name, 'qr')}"
            if all(entry(name, label)["heads"]["heads"] == entry(name, "qr")["heads"]["heads"] for label in prune)
            else "?",
        ],
    ]


def sweep_row(name: str, method: str, title: str, levels: Sequence[Any]) -> list[Cell]:
    return [title] + [x100(summary(name, f"{method}@num_heads={n}")["ndcg@10"], 1) for n in levels]


def pruning_table() -> list[list[Cell]]:
    first = "scifact_depth20_w80.json"
    header: list[Cell] = ["pruning (CoRe-R, top 8 re-selected)", f"none ({layers(first, 'core')} layers)"] + [
        f"{pct}% ({layers(first, f'core@prune={p}')})" for p, pct in (("0.3", 30), ("0.5", 50), ("0.7", 70))
    ]
    rows = [header]
    for title, name in (("depth 20", first), ("depth 40", "scifact_depth40_w80.json")):
        rows.append(
            [title]
            + [
                x100(summary(name, label)["ndcg@10"], 1)
                for label in ("core", "core@prune=0.3", "core@prune=0.5", "core@prune=0.7")
            ]
        )
    return rows


def speed_table() -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for title, file in (("CoRe-R, NQ preset", "bench_cpu_core.json"), ("ICR, all heads", "bench_cpu_icr.json")):
        bench = json.loads((ROOT / "results" / file).read_text(encoding="utf-8"))
        rows.append(
            [
                f"{title} (`results/{file}`)",
                str(bench["layers_run"]),
                seconds(bench["score_s_median"]),
                seconds(bench["bare_forward_s_median"]),
                num(bench["ratio_score_over_bare"], 2),
                num(bench["docs_per_s"], 1),
                megabytes(bench["peak_rss_mib"], "MiB"),
            ]
        )
    return rows


LEVELS = (1, 2, 4, 8, 16, 32, 64)


def window_sweep_table(name: str) -> list[list[Cell]]:
    """A ``--sweep-window`` run: method, window size, nDCG@10, time per query, peak RSS."""
    titles = {"core": "CoRe-R", "qr": "QR-R", "icr": "ICR"}
    levels = sorted(results(name)["settings"]["sweep_window"], key=lambda level: (level is None, level or 0))
    rows: list[list[Cell]] = []
    for method in ("qr", "core"):
        for level in levels:
            label = f"{method}@window={'none' if level is None else level}"
            s = summary(name, label)
            rows.append(
                [
                    titles[method],
                    "one prompt" if level is None else str(level),
                    x100(s["ndcg@10"], 1),
                    seconds(s["time_per_query_s"]),
                    megabytes(s["peak_mem_mb"]),
                ]
            )
    return rows


@cache
def window_study_tables(model: str) -> tuple[list[list[str]], ...]:
    """The tables ``scripts/window_study.py --report`` prints from ``results/window_study/<model>/``
    (nothing is recomputed), headers included."""
    import contextlib
    import io

    sys.path.insert(0, str(ROOT / "scripts"))
    import window_study

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        window_study.main(["--model", model, "--report"])
    return tuple(rows for _, rows in _tables(printed.getvalue().splitlines()))


def window_study_table(model: str, index: int) -> list[list[Cell]]:
    """Table ``index`` of the study report (0: CoRe-R, 1: QR-R)."""
    return [list(row) for row in window_study_tables(model)[index]]


@cache
def order_study_tables(model: str, sets: str) -> tuple[list[list[str]], ...]:
    """The tables ``scripts/order_study.py --report --sets SETS`` prints from
    ``results/order_study/<model>/`` (nothing is recomputed), headers included."""
    import contextlib
    import io

    sys.path.insert(0, str(ROOT / "scripts"))
    import order_study

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        order_study.main(["--model", model, "--sets", sets, "--report"])
    return tuple(rows for _, rows in _tables(printed.getvalue().splitlines()))


def order_study_table(model: str, sets: str, index: int) -> list[list[Cell]]:
    """Table ``index`` of the order study's report on ``sets`` (0: CoRe-R, 1: QR-R)."""
    return [list(row) for row in order_study_tables(model, sets)[index]]


@cache
def dtype_study_tables(model: str, out_dir: str = "results/dtype_study") -> tuple[list[list[str]], ...]:
    """The tables ``scripts/dtype_study.py --report`` prints from ``<out_dir>/<model>/`` (nothing
    is recomputed), headers included: one per method (CoRe-R, QR-R, ICR, those it has)."""
    import contextlib
    import io

    sys.path.insert(0, str(ROOT / "scripts"))
    import dtype_study

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        dtype_study.main(["--model", model, "--out-dir", str(ROOT / out_dir), "--report"])
    return tuple(rows for _, rows in _tables(printed.getvalue().splitlines()))


# The "bfloat16 on CPU" tables: (line before the table, model, results folder, table index)
DTYPE_STUDY = [
    (
        "SmolLM2-135M-Instruct, CoRe-R (`results/dtype_study/smollm2-135m-instruct/`)",
        "smollm2-135m-instruct",
        "results/dtype_study",
        0,
    ),
    (
        "SmolLM2-135M-Instruct, QR-R (`results/dtype_study/smollm2-135m-instruct/`)",
        "smollm2-135m-instruct",
        "results/dtype_study",
        1,
    ),
    (
        "SmolLM2-135M-Instruct, ICR (`results/dtype_study/smollm2-135m-instruct/`)",
        "smollm2-135m-instruct",
        "results/dtype_study",
        2,
    ),
    (
        "Gemma 3 270M, CoRe-R (`results/dtype_study/gemma3-270m/`)",
        "gemma3-270m",
        "results/dtype_study",
        0,
    ),
    (
        "Gemma 3 270M, QR-R (`results/dtype_study/gemma3-270m/`)",
        "gemma3-270m",
        "results/dtype_study",
        1,
    ),
    (
        "SmolLM2-135M-Instruct, CoRe-R, int8 on the MLPs only (`results/dtype_study/int8-mlp/smollm2-135m-instruct/`)",
        "smollm2-135m-instruct",
        "results/dtype_study/int8-mlp",
        0,
    ),
]


def span_study_table() -> list[list[Cell]]:
    """docs/results.md "Evidence spans": the rules of ``scripts/span_study.py`` from its summary."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import span_study

    record = json.loads((ROOT / "results" / "span_study" / "summary.json").read_text())
    return [list(row) for row in span_study.markdown_rows(record)]


def first_stage_table() -> list[list[Cell]]:
    """docs/results.md "Dense first stage": each first stage and CoRe-R over it (results/first_stage/),
    with CoRe-R's mean per-query nDCG@10 difference to its first stage and the standard error."""

    def pair(data: str, first_stage: str) -> list[Cell]:
        name = f"first_stage/{data}_{first_stage}_depth40_w80.json"
        fs, core = entry(name, "first-stage")["per_query"], entry(name, "core")["per_query"]
        diffs = [core[q]["metrics"]["ndcg@10"] - fs[q]["metrics"]["ndcg@10"] for q in core]
        mean = sum(diffs) / len(diffs)
        se = (sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs)) ** 0.5
        alone = x100(summary(name, "first-stage")["ndcg@10"], 1)
        sign = "+" if mean >= 0 else "-"
        change = cat(
            x100(summary(name, "core")["ndcg@10"], 1), f" ({sign}", x100(abs(mean), 1), " ± ", x100(se, 1), ")"
        )
        return [alone, change]

    def alone(first_stage: str) -> Cell:
        return x100(summary(f"first_stage/scifact_{first_stage}_first-stage_all.json", "first-stage")["ndcg@10"], 1)

    return [
        ["SciFact test, first 100 judged queries (qrels order)", *pair("scifact", "dense"), *pair("scifact", "bm25")],
        ["SciFact test, all 300 (first stages only)", alone("dense"), "-", alone("bm25"), "-"],
        ["TREC DL19 (43 queries)", *pair("dl19", "dense"), *pair("dl19", "bm25")],
    ]


def cpu_forward_table() -> list[list[Cell]]:
    """docs/results.md "CPU forward (packed)": ``benchmarks/cpu_roofline.py``'s modes."""
    modes = json.loads((ROOT / "results" / "speed" / "cpu_roofline_bf16.json").read_text())["modes"]
    rows: list[list[Cell]] = []
    for title, mode in (
        ("`score()`, packed (default)", "packed"),
        ("`score()`, sequential (before)", "sequential"),
        ("one bare sdpa forward, one prompt of 2,446 tokens", "bare"),
    ):
        figures = modes[mode]
        ratio: Cell = "1" if mode == "bare" else cat(num(figures["wall_over_bare"], 3), "x")
        rows.append(
            [
                title,
                num(figures["wall_s"], 2),
                num(figures["cpu_s"], 2),
                num(figures["gflops_per_s"], 0),
                num(figures["fraction_of_peak"], 2),
                ratio,
            ]
        )
    return rows


def llama8b_table() -> list[list[Cell]]:
    """docs/results.md "The Llama-3.1-8B shape on a CPU": ``benchmarks/cpu_llama8b_shape.py``'s
    figures (the numeric cells; the rest is prose)."""
    f = json.loads((ROOT / "results" / "speed" / "cpu_llama8b_shape.json").read_text())
    gemm = f["gemm_gflops_per_s_bf16"]
    return [
        [
            "layers built, parameters kept",
            cat(str(f["layers_built"]), " of 32; 3.80 B (no LM head: 0.53 B fewer than before this issue)"),
        ],
        [
            "tensors read from the shards",
            cat(str(f["reads"]["tensors_read"]), ": none of layers 15-31, not `lm_head.weight`"),
        ],
        [
            "load",
            cat(
                num(f["load_s"], 2),
                " s (memory-mapped); the first `score()` ",
                num(f["first_score_s"], 1),
                " s, which pages the weights in",
            ),
        ],
        [
            "peak RSS against the kept weights",
            cat(
                num(f["peak_rss_gib"], 2),
                " GiB against ",
                num(f["kept_weights_gib"], 2),
                " GiB (+",
                num(f["rss_over_kept_gib"], 2),
                " GiB; target +1.5 GiB)",
            ),
        ],
        [None, cat(join([num(t, 1) for t in f["score_s_packed"]], " s, "), " s (2 queries)")],
        [
            "`score()`, sequential / one bare forward of the 15 layers",
            cat(num(f["score_s_sequential"][0], 1), " s / ", num(f["bare_forward_s"][0], 1), " s"),
        ],
        [None, cat(num(f["achieved_gflops_per_s"], 0), " GFLOP/s")],
        [
            None,
            cat(
                "q/o ",
                num(gemm["q/o"], 0),
                ", k/v ",
                num(gemm["k/v"], 0),
                ", gate/up ",
                num(gemm["gate/up"], 0),
                ", down ",
                num(gemm["down"], 0),
                " GFLOP/s",
            ),
        ],
        ["fraction of that peak", cat(num(f["fraction_of_gemm_peak"], 2), " (target: at least 0.5)")],
    ]


def position_table() -> list[list[Cell]]:
    """docs/results.md "Position calibration": ``scripts/position_study.py --report``'s summary."""
    summary_json = json.loads((ROOT / "results" / "position_study" / "summary.json").read_text())
    table, sets = summary_json["table"], ("dl19", "scifact-train", "nq")
    rows: list[list[Cell]] = []
    for key, title in (
        ("none", "none (today's default)"),
        *(
            (f"{kind}@{weight}", f"{kind}, lambda {weight}")
            for kind in ("placeholder", "curve")
            for weight in ("0.5", "1.0", "1.5")
        ),
    ):
        rows.append(ndcg_tau_row(title, table[key], sets))
    rows.append(baseline_row("BM25 (first stage)", summary_json["bm25"], sets))
    return rows


def ndcg_tau_row(title: str, row: dict[str, Any], sets: Sequence[str], tau_is_one: bool = False) -> list[Cell]:
    """A study table's row: "nDCG@10 / order tau" per set, then the means (``tau_is_one``: a
    setting whose tau is 1 by construction, printed as 1.000)."""
    taus = {name: 1.0 if tau_is_one else row[name]["order_tau"] for name in [*sets, "mean"]}
    cells = [cat(num(row[name]["ndcg@10"], 2), " / ", num(taus[name], 3)) for name in sets]
    return [title, *cells, num(row["mean"]["ndcg@10"], 2), num(taus["mean"], 3)]


def baseline_row(title: str, values: dict[str, float], sets: Sequence[str]) -> list[Cell]:
    """A study table's baseline row: nDCG@10 per set and their mean, no tau."""
    return [title, *(num(values[name], 2) for name in sets), num(sum(values[n] for n in sets) / len(sets), 2), "-"]


def first_stage_order_table() -> list[list[Cell]]:
    """docs/results.md "First-stage order and first-stage scores": ``scripts/first_stage_study.py``."""
    summary_json = json.loads((ROOT / "results" / "first_stage_study" / "summary.json").read_text())
    table, sets = summary_json["table"], ("dl19", "scifact-train", "nq")
    rows: list[list[Cell]] = []
    for key, title, tau_one in (
        ("input", "input order (today's default)", False),
        ("lexical", '`order_by="lexical"`', False),
        ("lexical+lexical@0.5", '`order_by="lexical"`, fused with the in-list BM25, w 0.5', False),
        ("input", "`first_stage_scores`, w 0 (order only)", True),
        ("input+first-stage@0.5", "`first_stage_scores`, w 0.5", False),
        ("input+first-stage@1.0", "`first_stage_scores`, w 1", False),
        ("input+first-stage@2.0", "`first_stage_scores`, w 2", False),
    ):
        rows.append(ndcg_tau_row(title, table[key], sets, tau_one))
    for key, title in (("bm25", "BM25 (first stage)"), ("in-list lexical", "in-list BM25 alone")):
        rows.append(baseline_row(title, summary_json["baselines"][key], sets))
    return rows


# (where the table is: headings/lines searched in order, first table after the last; its rows,
#  without the separator line; with_header: the first row is the table's header)
TABLES: list[tuple[Sequence[str], Callable[[], list[list[Cell]]], bool]] = [
    (
        ["### 300-word documents", "TREC DL19 (`results/dl19_depth20_w300.json`)"],
        lambda: main_table("dl19_depth20_w300.json", main_methods("dl19_depth20_w300.json"), "nmRtLq"),
        False,
    ),
    (
        ["### 300-word documents", "SciFact test, first 50 judged queries"],
        lambda: main_table(
            "scifact_first50_depth20_w300.json", main_methods("scifact_first50_depth20_w300.json"), "nmRtLq"
        ),
        False,
    ),
    (["## Summary"], summary_table, False),
    (
        ["### Gemma 3 270M (base model, no chat template)"],
        lambda: main_table(
            "gemma3-270m_dl19_depth20_w80.json", main_methods("gemma3-270m_dl19_depth20_w80.json"), "nmtpL"
        ),
        False,
    ),
    (
        ["## Tables", "### TREC DL19, depth 20"],
        lambda: main_table("dl19_depth20_w80.json", main_methods("dl19_depth20_w80.json"), "nmRtdpLq"),
        False,
    ),
    (
        ["## Tables", "### TREC DL19, depth 40"],
        lambda: main_table("dl19_depth40_w80.json", main_methods("dl19_depth40_w80.json"), "nmRtdpLq"),
        False,
    ),
    (
        ["## Tables", "### SciFact test (300 queries), depth 20"],
        lambda: main_table(
            "scifact_depth20_w80.json",
            main_methods(
                "scifact_depth20_w80.json",
                "CoRe-R (8 CoRe heads, NQ)",
                [("core[scifact-train]", "CoRe-R (8 CoRe heads, SciFact train)")],
            ),
            "nmRLq",
        ),
        False,
    ),
    (
        ["## Tables", "### SciFact test (300 queries), depth 40"],
        lambda: main_table(
            "scifact_depth40_w80.json",
            main_methods(
                "scifact_depth40_w80.json",
                "CoRe-R (8 CoRe heads, NQ)",
                [("core[scifact-train]", "CoRe-R (8 CoRe heads, SciFact train)")],
            ),
            "nmRLq",
        ),
        False,
    ),
    (
        ["#### SciFact test, first 50 judged queries, depth 20"],
        lambda: main_table(
            "scifact_first50_depth20_w80.json", main_methods("scifact_first50_depth20_w80.json"), "nmRtdpLq"
        ),
        False,
    ),
    (
        ["#### SciFact, first 50, depth 20, CoRe heads detected on SciFact train"],
        lambda: main_table(
            "scifact_first50_depth20_w80_scifact-heads.json",
            main_methods("scifact_first50_depth20_w80_scifact-heads.json", "CoRe-R (8 CoRe heads, SciFact train)"),
            "nmRtdpLq",
        ),
        False,
    ),
    (["## Heads sweep and pruning sweep", "### TREC DL19 (43 queries), depth 20"], dl19_sweep_table, False),
    (
        ["## Heads sweep and pruning sweep", "### TREC DL19 (43 queries), depth 40"],
        lambda: [
            ["number of heads", *map(str, LEVELS)],
            sweep_row("dl19_depth40_w80_sweeps.json", "core", "CoRe-R", LEVELS),
            sweep_row("dl19_depth40_w80_sweeps.json", "qr", "QR-R", LEVELS),
        ],
        True,
    ),
    (
        ["## Heads sweep and pruning sweep", "### SciFact test (300 queries), depth 20 and 40"],
        lambda: [
            ["number of heads", *map(str, LEVELS), "all (ICR)"],
            *(
                sweep_row(name, method, f"{title}, depth {depth}", (*LEVELS, "all"))
                for depth, name in ((20, "scifact_depth20_w80.json"), (40, "scifact_depth40_w80.json"))
                for method, title in (("core", "CoRe-R"), ("qr", "QR-R"))
            ),
        ],
        True,
    ),
    (
        ["## Heads sweep and pruning sweep", "### SciFact test (300 queries), depth 20 and 40", "| depth 40 |"],
        pruning_table,
        True,
    ),
    (["## Speed"], speed_table, False),
    (
        ["## Prompt windows", "TREC DL19 (43 queries), depth 20, 80-word documents"],
        lambda: window_sweep_table("dl19_depth20_w80_windows.json"),
        False,
    ),
    (
        ["## Prompt windows", "SciFact test (300 queries), depth 20, 80-word documents, the presets' windows"],
        lambda: main_table(
            "scifact_depth20_w80_windows.json",
            [
                ("first-stage", "BM25 (first stage)"),
                ("scifact_depth20_w80.json::qr", "QR-R, one prompt"),
                ("qr", "QR-R, windows of 300 tokens (preset)"),
                ("scifact_depth20_w80.json::core", "CoRe-R, one prompt"),
                ("core", "CoRe-R, windows of 600 tokens (preset)"),
            ],
            "nmRtLq",
        ),
        False,
    ),
    (
        ["## Prompt windows", "SmolLM2-135M-Instruct, CoRe-R (`results/window_study/smollm2-135m-instruct/`)"],
        lambda: window_study_table("smollm2-135m-instruct", 0),
        True,
    ),
    (
        ["## Prompt windows", "SmolLM2-135M-Instruct, QR-R (`results/window_study/smollm2-135m-instruct/`)"],
        lambda: window_study_table("smollm2-135m-instruct", 1),
        True,
    ),
    (
        ["## Prompt windows", "Gemma 3 270M, CoRe-R (`results/window_study/gemma3-270m/`)"],
        lambda: window_study_table("gemma3-270m", 0),
        True,
    ),
    (
        ["## Prompt windows", "Gemma 3 270M, QR-R (`results/window_study/gemma3-270m/`)"],
        lambda: window_study_table("gemma3-270m", 1),
        True,
    ),
    (
        ["## Prompt order", "SmolLM2-135M-Instruct, CoRe-R, training sets"],
        lambda: order_study_table("smollm2-135m-instruct", "scifact-train,nq", 0),
        True,
    ),
    (
        ["## Prompt order", "SmolLM2-135M-Instruct, QR-R, training sets"],
        lambda: order_study_table("smollm2-135m-instruct", "scifact-train,nq", 1),
        True,
    ),
    (
        ["## Prompt order", "Gemma 3 270M, CoRe-R, training sets"],
        lambda: order_study_table("gemma3-270m", "scifact-train,nq", 0),
        True,
    ),
    (
        ["## Prompt order", "Gemma 3 270M, QR-R, training sets"],
        lambda: order_study_table("gemma3-270m", "scifact-train,nq", 1),
        True,
    ),
    (
        ["## Prompt order", "SmolLM2-135M-Instruct, CoRe-R, TREC DL19 and SciFact test"],
        lambda: order_study_table("smollm2-135m-instruct", "dl19,scifact-test", 0),
        True,
    ),
    (
        ["## Prompt order", "SmolLM2-135M-Instruct, QR-R, TREC DL19 and SciFact test"],
        lambda: order_study_table("smollm2-135m-instruct", "dl19,scifact-test", 1),
        True,
    ),
    *(
        (
            ["## bfloat16 on CPU", line],
            lambda model=model, out_dir=out_dir, index=index: [
                list(row) for row in dtype_study_tables(model, out_dir)[index]
            ],
            True,
        )
        for line, model, out_dir, index in DTYPE_STUDY
    ),
    (["## Evidence spans", "| rule | NQ-open hit"], span_study_table, False),
    (["## Dense first stage (all-MiniLM-L6-v2)"], first_stage_table, False),
    (["## Position calibration", "| setting | DL19"], position_table, False),
    (["## First-stage order and first-stage scores", "| setting | DL19"], first_stage_order_table, False),
    (["## CPU forward (packed)", "**SmolLM2-135M, bfloat16"], cpu_forward_table, False),
    (["## CPU forward (packed)", "### The Llama-3.1-8B shape on a CPU"], llama8b_table, False),
]


def prose() -> list[Cell]:
    """Structured sentences of the doc (whitespace collapsed) that quote JSON numbers."""
    gemma = "gemma3-270m_dl19_depth20_w80.json"
    dl19 = "dl19_depth40_w80_sweeps.json"
    sf20, sf40 = "scifact_depth20_w80.json", "scifact_depth40_w80.json"

    def n1(name: str, label: str) -> frozenset:
        return x100(summary(name, label)["ndcg@10"], 1)

    return [
        cat(
            "Gemma 3 270M (base model), TREC DL19, depth 20: BM25 ",
            n1(gemma, "first-stage"),
            ", ICR ",
            n1(gemma, "icr"),
            ", QR-R ",
            n1(gemma, "qr"),
            ", CoRe-R ",
            n1(gemma, "core"),
            ".",
        ),
        cat(
            "number of heads 1, 2, 4, 8, 16, 32, all: CoRe-R ",
            join([n1(gemma, f"core@num_heads={n}") for n in (1, 2, 4, 8, 16, 32, "all")], ", "),
            "; QR-R ",
            join([n1(gemma, f"qr@num_heads={n}") for n in (1, 2, 4, 8, 16, 32, "all")], ", "),
            ".",
        ),
        cat("nDCG@10 x 100 (BM25 ", n1(dl19, "first-stage"), ", ICR ", n1(dl19, "icr"), "):"),
        cat(
            "Pruning (CoRe-R, top 8 re-selected): none ",
            n1(dl19, "core"),
            ", 30% ",
            n1(dl19, "core@prune=0.3"),
            ", 50% ",
            n1(dl19, "core@prune=0.5"),
            ", 70% ",
            n1(dl19, "core@prune=0.7"),
            ".",
        ),
        cat(
            "(",
            num(summary(sf20, "icr")["time_per_query_s"], 1),
            " s per query, 20 documents, 1 thread; peak RSS ",
            num(summary(sf20, "icr")["peak_mem_mb"], 0),
            " MB)",
        ),
        cat("(one shared pass, ", num(summary(sf40, "icr")["time_per_query_s"], 1), " s per query, 40 documents)"),
    ]


# Sections whose tables are figures printed by a command (benchmarks, the PyTerrier example; each
# with its command), not evaluation results: nothing in results/*.json to re-print them from.
BENCHMARK_SECTIONS = ("## Serving", "## Reranking a run on Ray", "## PyTerrier experiment")


# ---------------------------------------------------------------------- comparing
def _tables(lines: list[str]) -> list[tuple[int, list[list[str]]]]:
    """(line index, rows) of each Markdown table; rows without the separator, bold removed."""
    found, i = [], 0
    while i < len(lines):
        if lines[i].lstrip().startswith("|"):
            start, rows = i, []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                if not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i].strip()):
                    rows.append([c.strip().replace("**", "") for c in lines[i].strip().strip("|").split("|")])
                i += 1
            found.append((start, rows))
        else:
            i += 1
    return found


def _matches(cell: str, expected: Cell) -> bool:
    if expected is None:
        return True
    if isinstance(expected, str):
        return cell == expected
    return cell in expected


def _show(expected: Cell) -> str:
    return "(any)" if expected is None else expected if isinstance(expected, str) else " or ".join(sorted(expected))


def check(doc: Path) -> list[str]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    tables = _tables(lines)
    problems, covered = [], set()
    for anchors, build, with_header in TABLES:
        position = 0
        for anchor in anchors:
            hits = [i for i in range(position, len(lines)) if lines[i].startswith(anchor) or lines[i] == anchor]
            if not hits:
                problems.append(f"{anchors}: heading {anchor!r} not found")
                break
            position = hits[0]
        else:
            table = next(((start, rows) for start, rows in tables if start >= position), None)
            if anchors[-1].startswith("|"):  # the table that holds this line
                table = next(((s, r) for s, r in tables if s <= position < s + len(r) + 1), None)
            if table is None:
                problems.append(f"{anchors}: no table")
                continue
            start, rows = table
            covered.add(start)
            body = rows if with_header else rows[1:]
            expected = build()
            if len(body) != len(expected):
                problems.append(f"line {start + 1}: {len(body)} rows in the doc, {len(expected)} re-printed")
            for row, want in zip(body, expected):
                if len(row) != len(want):
                    problems.append(f"line {start + 1}: row {row[0]!r} has {len(row)} cells, expected {len(want)}")
                    continue
                for column, (cell, cell_want) in enumerate(zip(row, want)):
                    if not _matches(cell, cell_want):
                        problems.append(
                            f"line {start + 1}: row {row[0]!r}, column {column + 1}: doc {cell!r}, "
                            f"JSON gives {_show(cell_want)}"
                        )
    for start, rows in tables:
        section = next((lines[i] for i in range(start, -1, -1) if lines[i].startswith("## ")), "")
        if start not in covered and not section.startswith(BENCHMARK_SECTIONS):
            problems.append(f"line {start + 1}: a table this script does not check ({rows[0]})")
    text = " ".join(" ".join(lines).split())
    for sentence in prose():
        options = [sentence] if isinstance(sentence, str) else sorted(sentence or ())
        if not any(option in text for option in options):
            problems.append(f"prose: none of {options[:2]}... is in the doc")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doc", default=str(ROOT / "docs" / "results.md"))
    args = parser.parse_args(argv)
    problems = check(Path(args.doc))
    for problem in problems:
        print(problem)
    print(
        f"{args.doc}: {len(TABLES)} tables and {len(prose())} sentences re-printed from results/*.json: "
        + ("all match" if not problems else f"{len(problems)} differences")
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
