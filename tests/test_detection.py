"""Head detection: planted heads on a tiny random model, the real SmolLM2 capture against an
eager recomputation, the CLI end to end, and bad detection data."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest

from core_rerank.detection import DetectionDataError, Example, beir_examples, read_jsonl_examples
from core_rerank.detection.data import positive_slots

DATA = Path(__file__).parent / "data" / "nq_detection_20.jsonl.gz"

# ---------------------------------------------------------------------- a tiny model with planted heads
WORDS = (
    "river stone garden window market winter harbor candle forest letter bridge mountain "
    "kettle lantern meadow violin copper velvet orchard island"
).split()
SINGLE = 0  # layer of the planted heads
STRONG, SELECTIVE, FLOOD = 0, 1, 2  # query heads 0, 1 (KV head 0) and 2 (KV head 1)


def _sentence(rng: random.Random, marker: str | None, n: int = 14) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    words.insert(n // 2, "giraffe")  # in every document: what the flooding head looks for
    if marker:
        words.insert(n // 3, marker)  # only in the positive: what the selective heads look for
    return " ".join(words)


def _tiny_examples(count: int = 6, negatives: int = 7, seed: int = 1) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        query = "which paragraph mentions the " + " ".join(rng.choice(WORDS) for _ in range(3))
        out.append(
            Example(query, _sentence(rng, "zebra"), tuple(_sentence(rng, None) for _ in range(negatives)), id=str(i))
        )
    return out


@pytest.fixture(scope="module")
def tiny(smollm2_dir):
    """A 2-layer Llama (hidden 64, 4 heads, 2 KV heads) with three planted layer-0 heads.

    Embeddings carry one constant feature (read by every query) and one feature each for
    " zebra" (only in positives), " giraffe" (once in every document) and "<|im_start|>" (a
    sink outside the documents). Keys of KV head 0 expose zebra (dim 7) and the sink (dim 6),
    of KV head 1 giraffe (dim 7); the slowest RoPE pairs (dims 6, 7) barely rotate.
    - head 0 (STRONG): only zebra, logit 20: nearly all attention on the positive;
    - head 1 (SELECTIVE): sink at logit 20, zebra at 18: a little mass, only on the positive;
    - head 2 (FLOOD): giraffe at logit 20: the same large mass on every document.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    zebra, giraffe = (tokenizer(w, add_special_tokens=False)["input_ids"] for w in (" zebra", " giraffe"))
    assert len(zebra) == 1 and len(giraffe) == 1
    sink = tokenizer.convert_tokens_to_ids("<|im_start|>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 1e12},
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    d = config.hidden_size // config.num_attention_heads
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        emb.normal_(0, 0.02)
        emb[:, :4] = 0
        emb[:, 2] = 1.0  # constant feature
        emb[zebra[0], 0] = 1.0
        emb[giraffe[0], 1] = 1.0
        emb[sink, 3] = 1.0
        attn = model.model.layers[SINGLE].self_attn
        norm = model.model.layers[SINGLE].input_layernorm
        normed = norm(emb[[zebra[0], giraffe[0], sink, 500]].unsqueeze(0))[0]
        q_const = float(normed[3, 2])  # what an ordinary (query) token shows on the constant feature
        k_zebra, k_giraffe, k_sink = float(normed[0, 0]), float(normed[1, 1]), float(normed[2, 3])
        scale = attn.scaling
        for proj, rows in ((attn.q_proj, range(0, 3 * d)), (attn.k_proj, range(0, 2 * d))):
            proj.weight[list(rows)] = 0
        attn.k_proj.weight[0 * d + 7, 0] = 1.0  # KV head 0, dim 7: zebra
        attn.k_proj.weight[0 * d + 6, 3] = 1.0  # KV head 0, dim 6: the sink
        attn.k_proj.weight[1 * d + 7, 1] = 1.0  # KV head 1, dim 7: giraffe

        def q_weight(logit, k_value):
            return logit / (scale * q_const * k_value)

        attn.q_proj.weight[STRONG * d + 7, 2] = q_weight(20, k_zebra)
        attn.q_proj.weight[SELECTIVE * d + 7, 2] = q_weight(18, k_zebra)
        attn.q_proj.weight[SELECTIVE * d + 6, 2] = q_weight(20, k_sink)
        attn.q_proj.weight[FLOOD * d + 7, 2] = q_weight(20, k_giraffe)
    return model, tokenizer


@pytest.fixture(scope="module")
def tiny_table(tiny):
    from core_rerank import detect_heads

    model, tokenizer = tiny
    return detect_heads(
        (model, tokenizer),
        _tiny_examples(),
        method="core",
        temperature=[0.1, 0.01],
        positions=3,
        progress=False,
        qr_calibration=True,
        batch_size=3,
    )


def test_planted_head_ranks_first_under_core(tiny_table):
    assert tiny_table.ranking()[0] == (SINGLE, STRONG)
    assert tiny_table.values()[SINGLE, STRONG] > 0.95
    # Heads that were not planted sit near chance (1 of 8 documents).
    others = [
        tiny_table.values()[l, h]
        for l in range(2)
        for h in range(4)
        if (l, h) != (SINGLE, STRONG) and (l, h) != (SINGLE, SELECTIVE) and (l, h) != (SINGLE, FLOOD)
    ]
    assert max(others) < 0.5
    config = tiny_table.top_heads(1)
    assert config.heads == [(SINGLE, STRONG)] and config.method == "core"
    assert tiny_table.num_prompts == 6 * 3


def test_flooding_head_separates_qr_from_core(tiny_table):
    qr, core = tiny_table.values("qr"), tiny_table.values("core", 0.1)
    flood, selective = (SINGLE, FLOOD), (SINGLE, SELECTIVE)
    # The flooding head puts more mass on the positive (QR prefers it) ...
    assert qr[flood] > qr[selective] + 0.02
    # ... but no more than on any negative, so CoRe does not (at both temperatures).
    assert core[selective] > core[flood] + 0.03
    assert tiny_table.values("core", 0.01)[selective] > tiny_table.values("core", 0.01)[flood] + 0.3
    assert abs(core[flood] - 1 / 8) < 0.02
    qr_rank, core_rank = tiny_table.ranking("qr"), tiny_table.ranking("core", 0.1)
    assert qr_rank.index(flood) < qr_rank.index(selective)
    assert core_rank.index(selective) < core_rank.index(flood)
    assert tiny_table.top_heads(2, method="qr").heads == [(SINGLE, STRONG), flood]
    assert tiny_table.top_heads(2, method="core").heads == [(SINGLE, STRONG), selective]


def test_calibrated_qr_removes_query_independent_heads(tiny_table):
    # The planted heads ignore the query, so the "N/A" prompt gives them the same mass.
    qr, calibrated = tiny_table.values("qr"), tiny_table.values("qr_calibrated")
    assert qr[SINGLE, STRONG] > 0.9
    assert abs(calibrated[SINGLE, STRONG]) < 1e-3 and abs(calibrated[SINGLE, FLOOD]) < 1e-3


def test_batched_detection_matches_one_prompt_at_a_time(tiny, tiny_table):
    from core_rerank import detect_heads

    single = detect_heads(
        tiny, _tiny_examples(), temperature=[0.1, 0.01], positions=3, progress=False, qr_calibration=True, batch_size=1
    )
    for key in ("core@0.1", "core@0.01", "qr", "qr_calibrated"):
        np.testing.assert_allclose(single.scores[key], tiny_table.scores[key], atol=1e-5)


def test_table_files_and_configs(tiny_table, tmp_path):
    from core_rerank import HeadConfig
    from core_rerank.detection import HeadScoreTable

    path = tmp_path / "table.json"
    tiny_table.to_json(path)
    loaded = HeadScoreTable.from_json(path)
    assert loaded.ranking() == tiny_table.ranking()
    np.testing.assert_allclose(loaded.values("qr"), tiny_table.values("qr"), atol=1e-7)
    # The "scores" member is the official layout, which HeadConfig's converter reads.
    data = json.loads(path.read_text())
    assert HeadConfig.from_scores(data["scores"], num_heads=3).heads == tiny_table.top_heads(3).heads
    official = tmp_path / "official.json"
    tiny_table.to_official_json(official, method="qr")
    assert HeadConfig.from_scores(official, num_heads=2).heads == tiny_table.top_heads(2, method="qr").heads
    from_official = HeadScoreTable.from_json(official)
    assert from_official.ranking()[:2] == tiny_table.ranking("qr")[:2]
    assert from_official.top_heads(2).heads == tiny_table.top_heads(2, method="qr").heads

    config = tiny_table.top_heads(3, num_layers_to_keep=1)
    assert config.num_layers_to_keep == 1 and all(layer == 0 for layer, _ in config.heads)
    prov = config.provenance.model_dump()
    assert prov["temperature"] == 0.1 and prov["num_heads"] == 3 and prov["positions"] == 3
    assert prov["num_prompts"] == 18 and prov["max_layers"] == 1 and "head_scores" in prov
    assert config.architecture.num_hidden_layers == 2 and config.architecture.num_key_value_heads == 2
    # A detected config carries its scores, so `heads plot` works on it alone.
    config_path = tmp_path / "heads.json"
    config.to_json(config_path)
    assert HeadScoreTable.from_json(config_path).ranking()[0] == (SINGLE, STRONG)
    with pytest.raises(ValueError, match="num_layers_to_keep"):
        tiny_table.top_heads(3, num_layers_to_keep=5)


def test_heatmap_and_curve_plots(tiny_table, tmp_path):
    pytest.importorskip("matplotlib")
    from core_rerank.plotting import plot_ndcg_vs_num_heads

    png = tiny_table.plot(tmp_path / "heat.png", num_heads=3)
    assert png.stat().st_size > 5000
    curve = plot_ndcg_vs_num_heads({1: 0.4, 2: 0.45, 8: 0.5}, tmp_path / "curve.png", references={"all heads": 0.42})
    assert curve.stat().st_size > 5000


def test_positive_slots_spread():
    rng = random.Random(0)
    assert positive_slots(10, 3, rng) == [0, 4, 9] or positive_slots(10, 3, rng) == [0, 5, 9]
    assert positive_slots(10, 5, rng) == [0, 2, 4, 7, 9]
    assert positive_slots(3, 10, rng) == [0, 1, 2]
    assert len(positive_slots(10, 1, rng)) == 1


# ---------------------------------------------------------------------- the real SmolLM2-135M
@pytest.mark.real_model
def test_fast_masses_equal_eager_recomputation(make_reranker):
    import torch
    from naive_reference import span_masses

    from core_rerank.detection.masses import document_masses
    from core_rerank.prompt import truncate_words

    reranker = make_reranker(method="icr")
    examples = read_jsonl_examples(DATA, limit=2).examples
    prompts = []
    for example, words, count in ((examples[0], 16, 3), (examples[1], 8, 2)):  # two lengths: padding
        docs = [truncate_words(d, words) for d in (example.positive, *example.negatives[:count])]
        prompts.append(reranker.builder.prepare(example.query, docs))
    seqs = [p.input_ids[: p.query_span[1]] for p in prompts]
    fast = document_masses(reranker.model, seqs, [p.query_span for p in prompts], [p.document_spans for p in prompts])
    model = reranker.model
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        for seq, prepared, masses in zip(seqs, prompts, fast):
            with torch.no_grad():
                out = model.base_model(input_ids=torch.tensor([seq]), output_attentions=True)
            start, end = prepared.query_span
            eager = np.stack(
                [
                    span_masses(a[0, :, start:end].mean(dim=1).double().numpy(), prepared.document_spans)
                    for a in out.attentions
                ]
            )
            assert masses.shape == eager.shape == (30, 9, len(prepared.document_spans))
            np.testing.assert_allclose(masses, eager, atol=1e-4)
            assert masses.sum(axis=-1).max() <= 1.0 + 1e-5 and masses.min() >= 0
    finally:
        model.set_attn_implementation(previous)
    assert model.config._attn_implementation == previous


@pytest.mark.real_model
@pytest.mark.slow
def test_cli_detect_end_to_end_writes_a_loadable_config(make_reranker, tmp_path, capsys):
    from core_rerank import HeadConfig
    from core_rerank.cli import main

    out, png = tmp_path / "heads.json", tmp_path / "heads.png"
    rc = main(
        [
            "detect",
            "--model",
            "smollm2-135m-instruct",
            "--data",
            str(DATA),
            "--method",
            "core",
            "--temperature",
            "0.1",
            "--num-heads",
            "8",
            "--positions",
            "1",
            "--limit",
            "20",
            "--negatives",
            "3",
            "--max-doc-words",
            "12",
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    config = HeadConfig.load(str(out))
    assert config.method == "core" and len(config.heads) == 8
    assert "smollm2-135m-instruct" in config.model_ids
    prov = config.provenance.model_dump()
    assert prov["num_prompts"] == 20 and prov["temperature"] == 0.1 and prov["positions"] == 1
    assert prov["data_sha256"] and prov["command"].startswith("core-rerank detect --model smollm2-135m-instruct")
    assert (tmp_path / "heads.scores.json").is_file()
    reranker = make_reranker(heads=str(out))
    assert reranker.heads.heads == config.heads
    results = reranker.rerank(
        "who wrote hamlet", ["Hamlet is a tragedy by William Shakespeare.", "The Eiffel Tower is in Paris."]
    )
    assert len(results) == 2 and all(np.isfinite(r.score) for r in results)
    qr = tmp_path / "qr.json"
    assert (
        main(
            [
                "heads",
                "select",
                str(tmp_path / "heads.scores.json"),
                "--method",
                "qr",
                "--num-heads",
                "4",
                "--out",
                str(qr),
            ]
        )
        == 0
    )
    assert HeadConfig.load(str(qr)).method == "qr"
    # Only the plot needs matplotlib: checked last, so a missing extra skips nothing else.
    pytest.importorskip("matplotlib")
    assert main(["heads", "plot", str(out), "--out", str(png)]) == 0
    assert png.stat().st_size > 5000


# ---------------------------------------------------------------------- bad data
def _write_jsonl(path: Path, records, gz: bool = False) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _para(text, positive):
    return {"title": "T", "paragraph_text": text, "is_positive": positive, "is_negative": not positive}


GOOD = {"question": "q", "paragraphs": [_para("pos text", True), _para("neg text", False)]}


def test_shipped_slice_reads_and_gzip_is_detected(tmp_path):
    data = read_jsonl_examples(DATA)
    assert len(data) == 20 and not data.skipped and len(data.sha256) == 64
    assert all(len(e.negatives) == 9 for e in data)
    plain = _write_jsonl(tmp_path / "plain.jsonl.gz", [GOOD, GOOD])  # misleading suffix: still read
    assert len(read_jsonl_examples(plain)) == 2
    zipped = _write_jsonl(tmp_path / "z.jsonl", [GOOD], gz=True)
    assert read_jsonl_examples(zipped).examples[0].positive == "T pos text"
    string_flags = dict(
        GOOD,
        paragraphs=[
            dict(_para("p", True), is_positive="True", is_negative="False"),
            dict(_para("n", False), is_positive="False", is_negative="True"),
        ],
    )
    assert len(read_jsonl_examples(_write_jsonl(tmp_path / "s.jsonl", [string_flags]))) == 1


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", r"bad\.jsonl:2: not valid JSON"),
        ('["a list"]', r"bad\.jsonl:2: each line must be a JSON object"),
        (json.dumps({"paragraphs": []}), r"bad\.jsonl:2: missing 'question'"),
        (json.dumps({"question": "q"}), r"bad\.jsonl:2: missing 'paragraphs'"),
        (
            json.dumps({"question": "q", "paragraphs": [{"is_positive": True}]}),
            r"bad\.jsonl:2: paragraph 0 has no 'paragraph_text'",
        ),
        (
            json.dumps({"question": "q", "paragraphs": [{"paragraph_text": "x"}]}),
            r"bad\.jsonl:2: paragraph 0 has no 'is_positive' flag",
        ),
        (
            json.dumps({"question": "q", "paragraphs": [dict(_para("x", True), is_positive="maybe")]}),
            r"bad\.jsonl:2: paragraph 0: 'is_positive' must be true or false",
        ),
        (
            json.dumps({"question": "q", "paragraphs": [dict(_para("x", True), is_negative=True)]}),
            r"bad\.jsonl:2: paragraph 0 is flagged both positive and negative",
        ),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, bad, message):
    path = _write_jsonl(tmp_path / "bad.jsonl", [GOOD, bad, GOOD])
    with pytest.raises(DetectionDataError, match=message):
        read_jsonl_examples(path)


def test_unusable_examples_are_skipped_and_counted(tmp_path):
    records = [
        GOOD,
        {"question": "q2", "paragraphs": [_para("only negatives", False), _para("more", False)]},
        {"question": "q3", "paragraphs": [_para("   ", True), _para("neg", False)]},  # empty positive
        {"question": "q4", "paragraphs": [_para("pos", True)]},  # no negative
        {"question": "q5", "paragraphs": [_para("pos", True), _para("", False), _para("neg", False)]},
        "",
        {"question": "", "paragraphs": [_para("pos", True), _para("neg", False)]},
    ]
    path = _write_jsonl(tmp_path / "mixed.jsonl", records)
    data = read_jsonl_examples(path)
    assert [e.query for e in data] == ["q", "q5"]
    reasons = [str(s) for s in data.skipped]
    assert len(reasons) == 4
    assert reasons[0].endswith("mixed.jsonl:2: no positive paragraph (with text)")
    assert reasons[1].endswith("mixed.jsonl:3: no positive paragraph (with text)")
    assert reasons[2].endswith("mixed.jsonl:4: no negative paragraph (with text)")
    assert reasons[3].endswith("mixed.jsonl:7: empty question")
    notes = [str(n) for n in data.notes]
    assert any("mixed.jsonl:3: paragraph 0: empty positive paragraph dropped" in n for n in notes)
    assert any("mixed.jsonl:5: paragraph 1: empty negative paragraph dropped" in n for n in notes)
    assert "4 skipped" in data.summary()
    with pytest.raises(DetectionDataError, match=r"mixed\.jsonl:2: no positive"):
        read_jsonl_examples(path, strict=True)
    assert len(read_jsonl_examples(path, limit=1)) == 1


def test_no_usable_example_is_a_clear_error(tmp_path):
    from core_rerank import detect_heads

    path = _write_jsonl(tmp_path / "none.jsonl", [{"question": "q", "paragraphs": [_para("p", True)]}])
    with pytest.raises(DetectionDataError, match=r"(?s)no usable detection examples.*none\.jsonl:1: no negative"):
        detect_heads(object(), str(path))


def test_cli_refuses_bad_options_before_loading_a_model(tmp_path, capsys):
    from core_rerank.cli import main
    from core_rerank.head_config import preset_dir

    base = ["detect", "--data", str(DATA)]
    inside = str(Path(str(preset_dir())) / "new-model.json")
    assert main(base + ["--out", inside]) == 2
    assert "inside the preset folder" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "h.json"), "--temperature", "0.1,1"]) == 2
    assert "need --select-on" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "h.json"), "--select-on", str(tmp_path / "nowhere")]) == 2
    assert "no BEIR folder" in capsys.readouterr().err
    assert not list(Path(str(preset_dir())).glob("new-model*"))


def test_beir_folder_examples(tmp_path):
    pytest.importorskip("bm25s")
    folder = tmp_path / "tiny-beir"
    (folder / "qrels").mkdir(parents=True)
    docs = {
        "d1": "cats purr and sleep",
        "d2": "dogs bark at cats",
        "d3": "cats and dogs play",
        "d4": "the stock market fell",
        "d5": "cats chase mice",
        "d6": "",
    }
    _write_jsonl(folder / "corpus.jsonl", [{"_id": k, "title": "", "text": v} for k, v in docs.items()])
    _write_jsonl(
        folder / "queries.jsonl",
        [
            {"_id": "q1", "text": "why do cats purr"},
            {"_id": "q2", "text": "stock market"},
            {"_id": "q3", "text": "empty doc"},
        ],
    )
    (folder / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td5\t0\nq2\td4\t2\nq3\td6\t1\n", encoding="utf-8"
    )
    data = beir_examples(folder, "train", negatives=2)
    assert [e.id for e in data] == ["q1"]  # BM25 finds nothing but the positive for q2
    assert any("q2: no negative" in str(s) for s in data.skipped)
    first = data.examples[0]
    assert first.positive == "cats purr and sleep" and len(first.negatives) == 2
    assert "cats purr and sleep" not in first.negatives
    assert any("q3: no relevant document with text" in str(s) for s in data.skipped)
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 d1 1 9 r\nq1 Q0 d4 2 8 r\nq1 Q0 d5 3 7 r\nq2 Q0 d4 1 5 r\nq2 Q0 d2 2 4 r\n")
    from_run = beir_examples(folder, "train", negatives=9, run=run)
    assert from_run.examples[0].negatives == ("the stock market fell", "cats chase mice")
    assert from_run.examples[1].negatives == ("dogs bark at cats",)
    assert len(from_run.sha256) == 64
