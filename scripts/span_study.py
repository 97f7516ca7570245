"""How should per-token scores become evidence spans? A study on training data only.

    python scripts/span_study.py --items 800                 # score (resumes) and report
    python scripts/span_study.py --report                    # report and plot from the JSON

Sets (both training data): **NQ-open** (``../shared/data/head-detection``: question, answer
strings, gold Wikipedia passage + BM25 negatives; items whose gold passage holds an answer
string) and **SciFact train** (claims with rationale sentences: the queries' ``metadata`` in
``../shared/data/scifact/queries.jsonl``, the abstract from the corpus; claims were written by
people reading the abstract, so word overlap is a strong baseline there). Each item is one
``rerank`` call, as a user makes it, with the gold passage and 4 negatives (the gold one at a
seeded random slot), the default reranker (``smollm2-135m-instruct``, CoRe preset, its windows),
through the same token hook ``rerank(relevant_spans=...)`` uses: the gold passage's word scores
(``core_rerank.spans.SpanCollector.word_scores``) are kept in the JSON, and every rule is applied
to them afterwards.

A hit: NQ, the top span holds an answer string (lower-cased); SciFact, most of the top span's
words lie in rationale sentences (sentences split by ``spans.sentence_units`` with no length cut,
indexed as the rationale's sentence numbers). Baselines: the lexical sentence (most query
content words), the first sentence, the first words at each rule's span length ("lead@len") and
a random sentence (expected). The plot: answer recall against the share of the passage's words
kept, keeping units best first (or by the threshold of the shipped rule).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core_rerank import spans as sp

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "results" / "span_study"
NEGATIVES = 4


def nq_items(limit: int) -> list[dict[str, Any]]:
    items = []
    with gzip.open(DATA / "head-detection" / "nq_open_oracle_bm25neg.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            gold = next(p for p in row["paragraphs"] if p["is_positive"])
            text = " ".join(gold["paragraph_text"].split())
            answers = [a for a in row["answers"] if a.lower() in text.lower()]
            if not answers:
                continue
            negatives = [" ".join(p["paragraph_text"].split()) for p in row["paragraphs"] if p["is_negative"]]
            items.append({"id": row["idx"], "query": row["question"], "gold": text, "answers": answers,
                          "negatives": negatives[:NEGATIVES]})  # fmt: skip
            if len(items) >= limit:
                break
    return items


def scifact_items(limit: int) -> list[dict[str, Any]]:
    from core_rerank.datasets import load_corpus

    train = {line.split("\t")[0] for line in (DATA / "scifact" / "qrels" / "train.tsv").read_text().splitlines()[1:]}
    claims = [json.loads(line) for line in (DATA / "scifact" / "queries.jsonl").read_text().splitlines()]
    claims = [c for c in claims if c["_id"] in train and c["metadata"]]
    corpus = load_corpus(DATA / "scifact" / "corpus.jsonl.gz")
    negatives = {}
    with gzip.open(DATA / "head-detection" / "scifact_train_bm25neg.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            negatives[row["question"]] = [p["paragraph_text"] for p in row["paragraphs"] if p["is_negative"]]
    items = []
    for claim in claims:
        doc_id, evidence = next(iter(claim["metadata"].items()))
        text = corpus[doc_id]["text"]
        sentences = sp.sentence_units(text, sp.word_bounds(text), len(text.split()), max_words=None)
        wanted = sorted({i for e in evidence for i in e["sentences"]})
        if not wanted or wanted[-1] >= len(sentences) or claim["text"] not in negatives:
            continue
        items.append({"id": claim["_id"], "query": claim["text"], "gold": text, "rationale": [sentences[i] for i in wanted],
                      "negatives": negatives[claim["text"]][:NEGATIVES]})  # fmt: skip
        if len(items) >= limit:
            break
    return items


def score_items(items: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """Each item's gold word scores (resumes from ``path``)."""
    import torch

    from core_rerank import CoReReranker

    torch.set_num_threads(1)
    done = {row["id"]: row for row in json.loads(path.read_text())["items"]} if path.exists() else {}
    todo = [item for item in items if item["id"] not in done]
    if todo:
        reranker = CoReReranker.from_pretrained("smollm2-135m-instruct", device="cpu")
        rng = random.Random(0)
        for n, item in enumerate(todo, 1):
            docs = list(item["negatives"])
            slot = rng.randrange(len(docs) + 1)
            docs.insert(slot, item["gold"])
            collector = sp.SpanCollector(docs, item["query"], sp.SpanSettings())
            reranker._score(item["query"], docs, {None: None}, collector.hook)
            words = collector.word_scores()[slot]
            done[item["id"]] = {**{k: v for k, v in item.items() if k != "negatives"}, "words": words.tolist()}
            if n % 25 == 0:
                print(f"  {n}/{len(todo)}", file=sys.stderr)
                path.write_text(json.dumps({"items": list(done.values())}))
        path.write_text(json.dumps({"items": list(done.values())}))
    return [done[item["id"]] for item in items if item["id"] in done]


# ----------------------------------------------------------------------------- rules
Unit = tuple[int, int]


@dataclass
class Passage:
    """A gold passage's words, sentence units and per-unit signals (attention sum, query-word
    overlap, answer-like words, and attention on words that hold no query word)."""

    words: np.ndarray
    units: list[Unit]
    attention: np.ndarray
    overlaps: np.ndarray
    answers: np.ndarray
    off_query: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.asarray([b - a for a, b in self.units], dtype=float)

    @property
    def index(self) -> np.ndarray:
        return np.arange(len(self.units), dtype=float)


def units_of(row: dict[str, Any], max_words: int | None = sp.MAX_UNIT_WORDS, kind: str | None = None) -> Passage:
    text, query = row["gold"], row["query"]
    bounds = sp.word_bounds(text)
    words = np.asarray(row["words"])
    units = sp.sentence_units(text, bounds, len(words), max_words)
    wanted = sp.content_words(query)
    plain = np.asarray([0.0 if sp.content_words(text[s:e]) & wanted else 1.0 for s, e in bounds[: len(words)]])
    return Passage(words, units, np.asarray([words[a:b].sum() for a, b in units]),
                   sp.unit_overlaps(text, bounds, units, wanted), sp.answer_words(text, bounds, units, query, kind),
                   np.asarray([(words[a:b] * plain[a:b]).sum() for a, b in units]))  # fmt: skip


def best_window(words: np.ndarray, size: int) -> Unit:
    size = min(size, len(words))
    sums = np.convolve(words, np.ones(size), mode="valid")
    start = int(np.argmax(sums))
    return start, start + size


def merged(units: list[Unit], values: np.ndarray, share: float) -> Unit:
    """The best unit, grown over neighbours scoring at least ``share`` of it."""
    best = int(np.argmax(values))
    first = last = best
    floor = share * max(values[best], 0)
    while first > 0 and values[first - 1] >= floor:
        first -= 1
    while last + 1 < len(units) and values[last + 1] >= floor:
        last += 1
    return units[first][0], units[last][1]


def with_short_neighbour(units: list[Unit], values: np.ndarray, short: int) -> Unit:
    """The best unit, joined to its better neighbour when it has fewer than ``short`` words."""
    best = int(np.argmax(values))
    (a, b), count = units[best], len(units)
    if b - a >= short or count == 1:
        return a, b
    other = best - 1 if best == count - 1 or (best > 0 and values[best - 1] >= values[best + 1]) else best + 1
    return min(a, units[other][0]), max(b, units[other][1])


Rule = Callable[[Passage], np.ndarray]


def share(values: np.ndarray) -> np.ndarray:
    """Values over the largest (negatives as 0), as ``spans.unit_scores`` combines them."""
    values = np.clip(np.asarray(values, dtype=float), 0.0, None)
    return values / values.max() if values.size and values.max() > 0 else np.zeros_like(values)


ANSWER_RULE = f"attention + {sp.LEXICAL_WEIGHT:g} x lexical + {sp.ANSWER_WEIGHT:g} x answer-like words per word"


def shipped(p: Passage, answer_weight: float = sp.ANSWER_WEIGHT) -> np.ndarray:
    return sp.unit_scores(p.words, p.units, p.overlaps, sp.LEXICAL_WEIGHT, p.answers, answer_weight)


def zscore(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std() + 1e-9)


def ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(-values, kind="stable"), kind="stable").astype(float)


def ranked_rules() -> dict[str, Rule]:
    """Rules that order a passage's units (the first is the top span; ties go to the earlier)."""
    lex = sp.LEXICAL_WEIGHT
    base: Rule = lambda p: share(p.attention) + lex * share(p.overlaps)  # noqa: E731
    rules: dict[str, Rule] = {
        "attention sum (sentence)": lambda p: p.attention,
        "attention mean (sentence)": lambda p: p.attention / p.lengths,
        "attention sum/sqrt(len)": lambda p: p.attention / np.sqrt(p.lengths),
        "lexical (baseline)": lambda p: p.overlaps,
        "lexical, attention breaks ties": lambda p: p.overlaps + 1e-3 * share(p.attention),
        "first sentence (baseline)": lambda p: -p.index,
        "attention/len^0.25 + 0.5 x lexical": lambda p: share(p.attention / p.lengths**0.25) + lex * share(p.overlaps),
        "attention/len^0.5 + 0.5 x lexical": lambda p: share(p.attention / p.lengths**0.5) + lex * share(p.overlaps),
        "z(attention) + 0.5 x z(lexical)": lambda p: zscore(p.attention) + lex * zscore(p.overlaps),
        "rank(attention) + rank(lexical)": lambda p: -(ranks(p.attention) + ranks(p.overlaps)),
        "attention on non-query words + 1 x lexical": lambda p: share(p.off_query) + share(p.overlaps),
        "attention + 0.5 x lexical + 0.2 / (1 + sentence index)": lambda p: base(p) + 0.2 / (1 + p.index),
        "answer-like words per word alone": lambda p: p.answers / p.lengths,
        "lexical + 5 x answer-like per word (no attention)": lambda p: share(p.overlaps) + 5 * p.answers / p.lengths,
        "attention + 5 x answer-like per word (no lexical)": lambda p: share(p.attention) + 5 * p.answers / p.lengths,
        "attention + 0.5 x lexical + 0.2 x answer-like words (count)": lambda p: base(p) + 0.2 * p.answers,
        "attention + 0.5 x lexical + 5 x answer-like per word, in every sentence (no gate)": lambda p: (
            base(p) + 5 * p.answers / p.lengths
        ),
        "(attention + 0.5 x lexical) x (1 + 5 x answer-like per word)": lambda p: (
            base(p) * (1 + 5 * p.answers / p.lengths)
        ),
    }
    for weight in (0.25, 0.5, 1.0, 2.0):
        rules[f"attention + {weight:g} x lexical"] = lambda p, w=weight: share(p.attention) + w * share(p.overlaps)
    for bonus in (0.1, 0.2, 0.3):
        rules[f"attention + 0.5 x lexical + {bonus:g} x first sentence"] = lambda p, b=bonus: (
            base(p) + b * (p.index == 0)
        )
    for weight in (1.0, 2.0, 3.0, 5.0, 7.0, 10.0):
        name = (
            ANSWER_RULE
            if weight == sp.ANSWER_WEIGHT
            else f"attention + 0.5 x lexical + {weight:g} x answer-like per word"
        )
        rules[name] = lambda p, w=weight: shipped(p, w)
    return rules


def variants(row: dict[str, Any]) -> dict[str, Unit]:
    """Top spans of rules on other units (sentence cuts, the answer type ignored, neighbours)."""
    found = {}
    for cut in (30, 50):
        p = units_of(row, cut)
        found[f"lexical, sentences cut at {cut} words"] = p.units[int(np.argmax(p.overlaps))]
        found[f"{ANSWER_RULE}, sentences cut at {cut} words"] = p.units[int(np.argmax(shipped(p)))]
    p = units_of(row, kind="any")
    found["attention + 0.5 x lexical + 5 x digits/names per word (any question)"] = p.units[int(np.argmax(shipped(p)))]
    p = units_of(row)
    found[f"{ANSWER_RULE}, joined to a neighbour under 10 words"] = with_short_neighbour(p.units, shipped(p), 10)
    return found


def evaluate(
    rows: list[dict[str, Any]], hit: Callable[[dict[str, Any], int, int], bool]
) -> dict[str, dict[str, float]]:
    table: dict[str, list[tuple[bool, int, bool]]] = {}

    def add(name: str, row: dict[str, Any], first: int, stop: int) -> None:
        bounds = sp.word_bounds(row["gold"])
        start, end = int(bounds[first, 0]), int(bounds[stop - 1, 1])
        lead = int(bounds[min(stop - first, len(bounds)) - 1, 1])
        table.setdefault(name, []).append((hit(row, start, end), stop - first, hit(row, 0, lead)))

    for row in rows:
        p = units_of(row)
        for name, rule in ranked_rules().items():
            add(name, row, *p.units[int(np.argmax(rule(p)))])
        for name, unit in variants(row).items():
            add(name, row, *unit)
        for share_ in (0.5, 0.8):
            add(f"attention sum, merge neighbours >= {share_:g} x best", row, *merged(p.units, p.attention, share_))
        for size in (10, 20, 30):
            add(f"attention window of {size} words", row, *best_window(p.words, size))
        bounds = sp.word_bounds(row["gold"])
        chance = np.mean([hit(row, int(bounds[a, 0]), int(bounds[b - 1, 1])) for a, b in p.units])
        table.setdefault("random sentence (expected)", []).append((chance, float(p.lengths.mean()), 0.0))
    return {
        name: {
            "hit_rate": float(np.mean([h for h, _, _ in values])),
            "mean_words": float(np.mean([n for _, n, _ in values])),
            "lead_at_same_length": float(np.mean([x for _, _, x in values])),
            "items": len(values),
        }
        for name, values in table.items()
    }


def paired_gain(rows: list[dict[str, Any]], hit: Callable, rule: str, baseline: str = "lexical (baseline)") -> dict:
    """The rule's hit rate minus the baseline's on the same items, with a bootstrap 95% interval
    (2000 resamples, seed 0), on all items and on the first and second halves."""
    rules = ranked_rules()
    gains = []
    for row in rows:
        p = units_of(row)
        bounds = sp.word_bounds(row["gold"])
        pair = [p.units[int(np.argmax(rules[name](p)))] for name in (rule, baseline)]
        gains.append([hit(row, int(bounds[a, 0]), int(bounds[b - 1, 1])) for a, b in pair])
    diff = np.asarray([float(g) - float(b) for g, b in gains])
    rng = np.random.default_rng(0)
    boot = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(2000)]
    half = len(diff) // 2
    return {"rule": rule, "baseline": baseline, "gain": float(diff.mean()), "low": float(np.percentile(boot, 2.5)),
            "high": float(np.percentile(boot, 97.5)), "first_half": float(diff[:half].mean()),
            "second_half": float(diff[half:].mean())}  # fmt: skip


def nq_hit(row: dict[str, Any], start: int, end: int) -> bool:
    piece = row["gold"][start:end].lower()
    return any(a.lower() in piece for a in row["answers"])


def scifact_hit(row: dict[str, Any], start: int, end: int) -> bool:
    bounds = sp.word_bounds(row["gold"])
    inside = [(s >= start and e <= end) for s, e in bounds]
    covered = sum(
        1
        for (s, e), kept in zip(bounds, inside)
        if kept and any(bounds[a, 0] <= s and e <= bounds[b - 1, 1] for a, b in row["rationale"])
    )
    return covered * 2 > sum(inside)


def recall_curve(
    rows: list[dict[str, Any]], hit: Callable, order_rule: str | None, thresholds: Sequence[float] = ()
) -> list[list[float]]:
    """(share of words kept, recall) keeping the top 1, 2, ... units by a rule, or the shipped
    rule's units at or above each threshold."""
    rules = ranked_rules()
    points: dict[float, list[tuple[float, bool]]] = {}
    for row in rows:
        p = units_of(row)
        bounds = sp.word_bounds(row["gold"])
        keys = list(thresholds) if thresholds else list(range(1, 7))
        for key in keys:
            if thresholds:
                kept = [u for u, s in zip(p.units, shipped(p)) if s >= key and s > 0]
            else:
                order = np.argsort(-rules[order_rule or ""](p), kind="stable")
                kept = [p.units[i] for i in order[:key]]
            found = any(hit(row, int(bounds[a, 0]), int(bounds[b - 1, 1])) for a, b in kept)
            points.setdefault(key, []).append((sum(b - a for a, b in kept) / len(p.words), found))
    return [[float(np.mean([s for s, _ in v])), float(np.mean([f for _, f in v]))] for _, v in sorted(points.items())]


def position_profile(rows: list[dict[str, Any]], words: int = 12) -> list[float]:
    """Mean word score at each of the first ``words`` positions over the passage's mean word score."""
    scores = [np.asarray(row["words"]) for row in rows]
    overall = np.mean([w.mean() for w in scores])
    return [float(np.mean([w[k] for w in scores if len(w) > k]) / overall) for k in range(words)]


def timing(items: list[dict[str, Any]], repeats: int = 3) -> dict[str, float]:
    """Seconds per ``rerank`` call with and without spans (each item's best of ``repeats``, the
    two modes alternating call by call), and the span work itself (the token hook plus the spans,
    timed inside the call): on a shared machine end-to-end times swing more than spans cost."""
    import torch

    from core_rerank import CoReReranker

    torch.set_num_threads(1)
    reranker = CoReReranker.from_pretrained("smollm2-135m-instruct", device="cpu")
    best = {"without": [float("inf")] * len(items), "with": [float("inf")] * len(items)}
    spent = calls = 0.0
    for _ in range(repeats):
        for n, item in enumerate(items):
            for key, value in (("without", None), ("with", True))[:: 1 if n % 2 else -1]:
                start = time.perf_counter()
                reranker.rerank(item["query"], [item["gold"], *item["negatives"]], relevant_spans=value)
                best[key][n] = min(best[key][n], time.perf_counter() - start)
        for item in items:
            docs = [item["gold"], *item["negatives"]]
            collector = sp.SpanCollector(docs, item["query"], sp.SpanSettings())
            clock = [0.0]

            def hook(*args: Any, collector: Any = collector, clock: list = clock) -> None:
                began = time.perf_counter()
                collector.hook(*args)
                clock[0] += time.perf_counter() - began

            reranker._score(item["query"], docs, {None: None}, hook)
            began = time.perf_counter()
            collector.spans()
            spent += clock[0] + time.perf_counter() - began
            calls += 1
    span_s = spent / calls
    without, with_spans = float(np.mean(best["without"])), float(np.mean(best["with"]))
    return {"without": without, "with": with_spans, "ratio": with_spans / without, "span_work_s": span_s,
            "span_work_share": span_s / without, "calls": len(items), "repeats": repeats}  # fmt: skip


def plot(record: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(record["sets"]), figsize=(5.5 * len(record["sets"]), 4.2), squeeze=False)
    for ax, (name, result) in zip(axes[0], record["sets"].items()):
        for label, points in result["curves"].items():
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
        ax.set_title(f"{name} ({result['items']} gold passages)")
        ax.set_xlabel("share of the passage's words kept")
        ax.set_ylabel("answer recall" if name == "nq" else "rationale hit")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


CURVES = {
    "shipped rule, threshold 1.0 .. 0": None,
    "attention sum, top-n sentences": "attention sum (sentence)",
    "lexical, top-n sentences": "lexical (baseline)",
    "first n sentences": "first sentence (baseline)",
}
THRESHOLDS = (1.0, 0.9, 0.75, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)


DISPLAY = {
    "lexical (baseline)": "lexical sentence (baseline: most query content words)",
    f"attention + {sp.LEXICAL_WEIGHT:g} x lexical": f"attention + {sp.LEXICAL_WEIGHT:g} x lexical (shipped before)",
    ANSWER_RULE: f"{ANSWER_RULE} (shipped)",
}


def markdown_rows(record: dict[str, Any]) -> list[list[str]]:
    """The docs/results.md table: one row a rule, best first by the mean hit rate of the sets
    (``scripts/check_results_tables.py`` re-prints it from ``summary.json``)."""
    nq, sf = (record["sets"][name]["rules"] for name in ("nq", "scifact-train"))
    rows = []
    for rule in sorted(nq, key=lambda k: -(nq[k]["hit_rate"] + sf[k]["hit_rate"])):
        cells = [DISPLAY.get(rule, rule)]
        for row in (nq[rule], sf[rule]):
            lead = "-" if rule.startswith("random") else f"{row['lead_at_same_length']:.1%}"
            cells += [f"{row['hit_rate']:.1%}", f"{row['mean_words']:.1f}", lead]
        rows.append(cells)
    return rows


def report(record: dict[str, Any]) -> None:
    for name, result in record["sets"].items():
        print(f"\n{name}: {result['items']} items (hit rate of the top span, mean words, first words at that length)")
        for rule, row in sorted(result["rules"].items(), key=lambda kv: -kv[1]["hit_rate"]):
            print(f"  {rule:46s} {row['hit_rate']:6.1%} {row['mean_words']:6.1f} {row['lead_at_same_length']:6.1%}")
        if "position_profile" in result:
            profile = " ".join(f"{x:.1f}" for x in result["position_profile"])
            print(f"  word score at words 1-{len(result['position_profile'])} over the passage mean: {profile}")
    print(
        "\n| rule | NQ-open hit | words | first words at that length | SciFact train hit | words | first words at that length |"
    )
    print("|---|---|---|---|---|---|---|")
    for cells in markdown_rows(record):
        print("| " + " | ".join(cells) + " |")
    for name, result in record["sets"].items():
        if "gain" in result:
            g = result["gain"]
            print(f"\n{name}: {g['rule']} minus {g['baseline']}, same items: {g['gain']:+.1%} "
                  f"(95% [{g['low']:+.1%}, {g['high']:+.1%}]; halves {g['first_half']:+.1%}, {g['second_half']:+.1%})")  # fmt: skip
    if "timing" in record:
        t = record["timing"]
        print(
            f"\nrerank: {t['without']:.3f} s without spans, {t['with']:.3f} s with ({t['ratio']:.3f}x end to end); "
            f"the span work {t['span_work_s'] * 1000:.1f} ms a call ({t['span_work_share']:.2%} of a call)"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=800, help="NQ-open items")
    parser.add_argument("--scifact-items", type=int, default=400, help="SciFact train items")
    parser.add_argument("--timing-items", type=int, default=10, help="NQ items timed with and without spans")
    parser.add_argument("--report", action="store_true", help="only report and plot from the saved JSON")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    summary = OUT / "summary.json"
    record = previous = json.loads(summary.read_text()) if summary.exists() else {}
    if not args.report:
        sets = {"nq": (nq_items, nq_hit, args.items), "scifact-train": (scifact_items, scifact_hit, args.scifact_items)}
        record = {"model": "smollm2-135m-instruct", "negatives": NEGATIVES, "lexical_weight": sp.LEXICAL_WEIGHT,
                  "answer_weight": sp.ANSWER_WEIGHT, "sets": {}}  # fmt: skip
        for name, (load, hit, count) in sets.items():
            items = load(count)
            rows = score_items(items, OUT / f"{name}.json")
            curves = {
                label: recall_curve(rows, hit, rule, () if rule else THRESHOLDS) for label, rule in CURVES.items()
            }
            record["sets"][name] = {"items": len(rows), "rules": evaluate(rows, hit), "curves": curves,
                                    "position_profile": position_profile(rows),
                                    "gain": paired_gain(rows, hit, ANSWER_RULE)}  # fmt: skip
        if args.timing_items:
            record["timing"] = timing(nq_items(args.timing_items))
        elif "timing" in previous:
            record["timing"] = previous["timing"]
        summary.write_text(json.dumps(record, indent=1) + "\n")
    report(record)
    plot(record, ROOT / "docs" / "span_study.png")


if __name__ == "__main__":
    main()
