"""Evidence spans (core_rerank.spans): offsets into the text as given on every core path, the
settings, and the span rule's pieces."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from core_rerank import spans as sp
from core_rerank.errors import InputError
from core_rerank.prompt import document_texts

QUERY = "What is the capital of France?"
DOCS = [
    "Bananas are yellow.  They grow in\tbunches.\n\nMonkeys like them.",
    "Monkeys like bananas. The capital of France is Paris. It has the Eiffel Tower.",
    {"title": "Berlin", "text": "Berlin is the capital of Germany. It has many museums."},
    "   ",
    "The Loire flows through France. Wine is made in its valley.",
]


def check_spans(results, documents, threshold=0.1, max_spans=None):
    """Every result's spans lie in its text, start and end on words, scores in [0, 1] best first."""
    texts = document_texts(documents)
    assert results
    for r in results:
        assert r.text == texts[r.index]
        spans = r.relevant_spans
        assert isinstance(spans, list)
        if not r.text.strip():
            assert spans == []
            continue
        assert spans, f"no span for document {r.index}"
        assert max_spans is None or len(spans) <= max_spans
        scores = [s["score"] for s in spans]
        assert scores == sorted(scores, reverse=True) and scores[0] == 1.0
        assert all(threshold <= s <= 1.0 for s in scores)
        for s in spans:
            assert 0 <= s["start"] < s["end"] <= len(r.text)
            piece = r.text[s["start"] : s["end"]]
            assert piece == piece.strip() and piece
            # whole words: nothing but whitespace (or the text's edge) on either side
            assert s["start"] == 0 or r.text[s["start"] - 1].isspace()
            assert s["end"] == len(r.text) or r.text[s["end"]].isspace()
        ordered = sorted(spans, key=lambda s: s["start"])
        assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(ordered)), "spans overlap"


@pytest.fixture(scope="module")
def core(make_reranker):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield make_reranker(method="core")
    torch.set_num_threads(before)


@pytest.fixture
def setting(core):
    """Change the reranker's attributes for one test and put them back."""
    saved = {}

    def change(**values):
        for name, value in values.items():
            saved.setdefault(name, getattr(core, name))
            setattr(core, name, value)

    yield change
    for name, value in saved.items():
        setattr(core, name, value)


def test_spans_lie_in_the_text_as_given_and_leave_the_ranking_alone(core):
    plain = core.rerank(QUERY, DOCS)
    usage = dict(core.last_usage)
    results = core.rerank(QUERY, DOCS, relevant_spans=True)
    assert [(r.index, r.score) for r in results] == [(r.index, r.score) for r in plain]
    assert core.last_usage == usage  # the same prompts: no extra pass
    assert all(r.relevant_spans is None for r in plain) and "relevant_spans" not in plain[0].to_dict()
    check_spans(results, DOCS)
    by_index = {r.index: r for r in results}
    paris = by_index[1]
    assert "Paris" in paris.text[paris.relevant_spans[0]["start"] : paris.relevant_spans[0]["end"]]
    # a {"text", "title"} document: offsets into title + " " + text, what RerankResult.text holds
    assert by_index[2].text.startswith("Berlin Berlin is")


def test_threshold_and_max_spans(core):
    every = core.rerank(QUERY, DOCS, relevant_spans={"threshold": 0.0})
    some = core.rerank(QUERY, DOCS, relevant_spans={"threshold": 0.5, "max_spans": 1})
    check_spans(every, DOCS, threshold=0.0)
    check_spans(some, DOCS, threshold=0.5, max_spans=1)
    texts = {r.index: r for r in every}
    for r in some:
        assert r.relevant_spans == [s for s in texts[r.index].relevant_spans if s["score"] >= 0.5][:1]
    # threshold 0 keeps every sentence with any positive score: more than the default
    assert sum(len(r.relevant_spans) for r in every) > sum(len(r.relevant_spans) for r in some)


def test_messy_whitespace_and_duplicates_map_to_each_own_text(core):
    docs = ["Paris is the capital of France.  It is large.", "Paris  is the\tcapital of France. It\t is large."]
    results = core.rerank(QUERY, docs, relevant_spans={"threshold": 0.0})
    assert len(core.windows(QUERY, docs)[0]) == 2 and len(core._plan(QUERY, docs).slots) == 1  # one slot
    check_spans(results, docs, threshold=0.0)
    spans = {r.index: r.relevant_spans for r in results}
    words = [[" ".join(docs[i][s["start"] : s["end"]].split()) for s in spans[i]] for i in (0, 1)]
    assert words[0] == words[1]  # the same sentences, at each text's own offsets
    assert [s["score"] for s in spans[0]] == [s["score"] for s in spans[1]]


def test_a_cut_document_gets_spans_only_in_its_scored_part(core, setting):
    long_doc = "Paris is the capital of France. " * 3 + "Filler words go on here. " * 300
    setting(max_doc_words=40)
    results = core.rerank(QUERY, [long_doc, "Bananas are yellow."], relevant_spans={"threshold": 0.0})
    check_spans(results, [long_doc, "Bananas are yellow."], threshold=0.0)
    cut = next(r for r in results if r.index == 0)
    last_scored = [m.end() for m in re.finditer(r"\S+", long_doc)][39]
    assert max(s["end"] for s in cut.relevant_spans) <= last_scored
    assert max(s["end"] for s in cut.relevant_spans) > last_scored - 30  # the scored part is covered


@pytest.mark.parametrize("order", ["both", "ends"])
def test_windows_and_orders(core, setting, order):
    docs = [d for d in DOCS if isinstance(d, dict) or d.strip()] + [
        "Lyon is a large city in France.",
        "Madrid is the capital of Spain.",
    ]
    setting(window_tokens=48, document_order=order)
    assert len(core.windows(QUERY, docs)) > 1
    check_spans(core.rerank(QUERY, docs, relevant_spans=True), docs)


def test_both_orders_average_the_word_scores(core, setting):
    docs = ["Paris is the capital of France. It is large.", "Bananas are yellow. Monkeys eat them."]
    found = {}
    for order in ("first_stage", "reversed", "both"):
        setting(document_order=order, window_tokens=None)
        collector = sp.SpanCollector(docs, QUERY, sp.SpanSettings())
        core._score(QUERY, docs, {None: None}, collector.hook)
        found[order] = collector.word_scores()
    for i in range(2):
        np.testing.assert_allclose(found["both"][i], (found["first_stage"][i] + found["reversed"][i]) / 2)
        assert not np.allclose(found["first_stage"][i], found["reversed"][i])  # the orders differ


def test_word_scores_keep_every_token_score(core):
    docs = ["Paris, the capital of France, is on the Seine (a river).", "Bananas are yellow."]
    prepared = core.prepare(QUERY, docs)
    tokens = core.token_scores(prepared)
    collector = sp.SpanCollector(docs, QUERY, sp.SpanSettings())
    plan = core._plan(QUERY, docs)
    collector.hook(plan, [0, 1], prepared, tokens)
    for i, (start, end) in enumerate(prepared.document_spans):
        words = collector.word_scores()[i]
        assert len(words) == len(docs[i].split())
        assert words.sum() == pytest.approx(tokens[start:end].sum())


@pytest.mark.parametrize("method", ["qr", "icr"])
def test_every_method(make_reranker, method):
    reranker = make_reranker(method=method)
    check_spans(reranker.rerank(QUERY, DOCS[:3], relevant_spans={"max_spans": 2}), DOCS[:3], max_spans=2)


def test_no_documents_and_only_empty_documents(core):
    assert core.rerank(QUERY, [], relevant_spans=True) == []
    results = core.rerank(QUERY, ["", "  "], relevant_spans=True)
    assert [r.relevant_spans for r in results] == [[], []]


@pytest.mark.parametrize(
    "value",
    [{"threshold": -0.1}, {"threshold": 1.5}, {"threshold": "0.1"}, {"max_spans": 0}, {"max_spans": -2},
     {"max_spans": 1.5}, {"unit": "paragraph"}, {"mode": "enabled"}, "yes", 3],
)  # fmt: skip
def test_bad_settings_are_refused(core, value):
    with pytest.raises(InputError):
        core.rerank(QUERY, ["Paris is in France."], relevant_spans=value)


def test_settings_values():
    assert sp.span_settings(None) is None and sp.span_settings(False) is None
    assert sp.span_settings(True) == sp.SpanSettings(threshold=0.1, max_spans=None, unit="sentence")
    assert sp.span_settings({"max_spans": 2}).max_spans == 2


def test_word_bounds_follow_str_split():
    text = " a\u00a0b\tc\n\nd\u2003e  f\x1cg "
    bounds = sp.word_bounds(text)
    assert [text[a:b] for a, b in bounds] == text.split()


def test_sentences():
    text = "Dr. Smith et al. found it. The U.S. grew 5 p.c. in 2001. Xy z\nNew line here and e.g. more"
    bounds = sp.word_bounds(text)
    units = sp.sentence_units(text, bounds, len(bounds))
    pieces = [text[bounds[a, 0] : bounds[b - 1, 1]] for a, b in units]
    assert pieces == [
        "Dr. Smith et al. found it.",
        "The U.S. grew 5 p.c. in 2001.",
        "Xy z",
        "New line here and e.g. more",
    ]
    long = " ".join(f"w{i}" for i in range(100))
    cut = sp.sentence_units(long, sp.word_bounds(long), 100)
    assert len(cut) == 3 and all(b - a <= sp.MAX_UNIT_WORDS for a, b in cut) and cut[-1][1] == 100
    assert sp.sentence_units(long, sp.word_bounds(long), 60, max_words=None) == [(0, 60)]


def test_select_spans_ranks_units_and_maps_scores_to_unit_interval():
    text = "Cats sleep a lot. Paris is the capital of France. Dogs bark."
    bounds = sp.word_bounds(text)
    words = np.zeros(len(bounds))
    words[4:9] = 1.0  # the Paris sentence
    words[0] = 0.3
    spans = sp.select_spans(text, bounds, words, "capital of France", sp.SpanSettings(threshold=0.0))
    assert text[spans[0]["start"] : spans[0]["end"]] == "Paris is the capital of France."
    assert spans[0]["score"] == 1.0 and all(0 <= s["score"] <= 1 for s in spans)
    assert [text[s["start"] : s["end"]] for s in spans[1:]] == ["Cats sleep a lot."]  # "Dogs bark." scores 0
    words_only = sp.select_spans(text, bounds, words, "x", sp.SpanSettings(unit="word", max_spans=3))
    assert [text[s["start"] : s["end"]] for s in words_only] == ["Paris", "is", "the"]
    assert sp.select_spans(text, bounds, -np.ones(len(bounds)), "zzz", sp.SpanSettings()) == []


def test_what_a_query_asks_for():
    assert sp.asks_for("When did the bridge open?") == "date"
    assert sp.asks_for("what year was it built") == "date"
    assert sp.asks_for("how many episodes are there in dragon ball z") == "number"
    assert sp.asks_for("Who wrote Hamlet") == "name"
    assert sp.asks_for("where is the Loire") == "name"
    assert sp.asks_for("what is the capital of France") == "any"
    assert sp.asks_for("Aspirin lowers the risk of stroke.") == "any"  # a claim: no question words


def test_answer_words_count_what_the_query_asks_for_and_skip_its_own_words():
    text = "The Bridge opened in May 1932 with Mayor Smith. Nine more came in three years."
    bounds = sp.word_bounds(text)
    units = sp.sentence_units(text, bounds, len(bounds))
    assert units == [(0, 9), (9, 15)]
    count = lambda query: sp.answer_words(text, bounds, units, query).tolist()  # noqa: E731
    assert count("when did the bridge open") == [2, 0]  # May, 1932
    assert count("how many bridges opened") == [1, 2]  # 1932; Nine, three ("opened" is the query's)
    assert count("who opened the bridge") == [3, 0]  # May, Mayor, Smith ("Bridge" is the query's; "Nine" starts)
    assert count("The bridge opened.") == [4, 0]  # a claim: digits and names
    assert sp.answer_words(text, bounds, units, "who opened the bridge", kind="any").tolist() == [4, 0]


def test_answer_like_words_lift_a_unit_only_where_there_is_query_evidence():
    text = "The bridge opened after many long delays. The bridge opened in May of 1932."
    bounds = sp.word_bounds(text)
    units = sp.sentence_units(text, bounds, len(bounds))
    even = np.full(len(bounds), 0.1)
    pieces = lambda spans: [text[s["start"] : s["end"]] for s in spans]  # noqa: E731
    # equal attention and query words: without the answer term the first sentence wins the tie
    overlaps = sp.unit_overlaps(text, bounds, units, sp.content_words("when did the bridge open"))
    assert sp.unit_scores(even, units, overlaps, sp.LEXICAL_WEIGHT).tolist() == [1.0, 1.0]
    spans = sp.select_spans(text, bounds, even, "when did the bridge open", sp.SpanSettings(threshold=0.0))
    assert pieces(spans) == ["The bridge opened in May of 1932.", "The bridge opened after many long delays."]
    lifted = 1 + sp.LEXICAL_WEIGHT + sp.ANSWER_WEIGHT * 2 / 7
    assert spans[1]["score"] == pytest.approx((1 + sp.LEXICAL_WEIGHT) / lifted)
    # no attention and no query word in the second sentence: its date alone is no evidence
    first_only = np.where(np.arange(len(bounds)) < 7, 0.1, 0.0)
    spans = sp.select_spans(text, bounds, first_only, "when was it finished", sp.SpanSettings(threshold=0.0))
    assert pieces(spans) == ["The bridge opened after many long delays."]


def _span_study():
    import importlib.util
    import sys
    from pathlib import Path

    if "span_study" not in sys.modules:  # its dataclass needs the module registered
        path = Path(__file__).resolve().parents[1] / "scripts" / "span_study.py"
        spec = importlib.util.spec_from_file_location("span_study", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["span_study"] = module
        spec.loader.exec_module(module)
    return sys.modules["span_study"]


def test_the_shipped_rule_is_the_one_the_study_measured_and_it_meets_the_bar():
    import json

    study = _span_study()
    record = json.loads((study.OUT / "summary.json").read_text())
    assert (record["lexical_weight"], record["answer_weight"]) == (sp.LEXICAL_WEIGHT, sp.ANSWER_WEIGHT)
    nq, sf = (record["sets"][name]["rules"] for name in ("nq", "scifact-train"))
    shipped, lexical = study.ANSWER_RULE, "lexical (baseline)"
    # the bar on training data: NQ-open +5 points at no greater length, no loss on SciFact
    assert nq[shipped]["hit_rate"] >= nq[lexical]["hit_rate"] + 0.05
    assert nq[shipped]["mean_words"] <= nq[lexical]["mean_words"]
    assert sf[shipped]["hit_rate"] >= sf[lexical]["hit_rate"]
    # select_spans (what rerank returns) puts the study's top unit first on the stored passages
    rows = json.loads((study.OUT / "nq.json").read_text())["items"][:60]
    for row in rows:
        passage = study.units_of(row)
        first, stop = passage.units[int(np.argmax(study.shipped(passage)))]
        bounds = sp.word_bounds(row["gold"])
        top = sp.select_spans(row["gold"], bounds, np.asarray(row["words"]), row["query"], sp.SpanSettings())[0]
        assert (top["start"], top["end"]) == (bounds[first, 0], bounds[stop - 1, 1])


def test_spans_within_and_join_spans():
    whole = "Title here Body one. Body two."
    spans = [{"start": 21, "end": 30, "score": 1.0}, {"start": 0, "end": 20, "score": 0.5}]
    inside = sp.spans_within(spans, whole, "  Body one. Body two.")
    assert inside == [{"start": 12, "end": 21, "score": 1.0}, {"start": 2, "end": 11, "score": 0.5}]
    assert [("  Body one. Body two."[s["start"] : s["end"]]) for s in inside] == ["Body two.", "Body one."]
    assert sp.spans_within(spans, whole, "not there") == []
    assert sp.join_spans(whole, spans) == whole[0:30]  # only a space between: one piece
    apart = [{"start": 0, "end": 5, "score": 1.0}, {"start": 21, "end": 30, "score": 0.5}]
    assert sp.join_spans(whole, apart) == "Title ... Body two."
    assert (
        sp.join_spans(whole, [{"start": 0, "end": 10, "score": 1}, {"start": 5, "end": 15, "score": 1}]) == whole[:15]
    )


def test_packed_and_sequential_forwards_give_the_same_spans(core, setting):
    setting(window_tokens=48)
    found = {}
    for forward in ("packed", "sequential"):
        setting(forward=forward)
        found[forward] = {
            r.index: r.relevant_spans for r in core.rerank(QUERY, DOCS, relevant_spans={"threshold": 0.0})
        }
    for index, spans in found["packed"].items():
        other = found["sequential"][index]
        assert [(s["start"], s["end"]) for s in spans] == [(s["start"], s["end"]) for s in other]
        assert [s["score"] for s in spans] == pytest.approx([s["score"] for s in other], abs=1e-4)
