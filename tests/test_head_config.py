"""Head configs: presets, validation against the paper models' configs, converters."""

import json

import pytest
from transformers import GraniteConfig, LlamaConfig, MistralConfig

from core_rerank.head_config import HeadConfig, HeadConfigError, find_preset, preset_names

# The three paper models' real shapes (no weights needed).
PAPER_CONFIGS = {
    "llama-3.1-8b-instruct": LlamaConfig(
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, hidden_size=4096, intermediate_size=14336
    ),
    "mistral-7b-instruct": MistralConfig(
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, hidden_size=4096, intermediate_size=14336
    ),
    "granite-3.2-8b-instruct": GraniteConfig(
        num_hidden_layers=40, num_attention_heads=32, num_key_value_heads=8, hidden_size=4096, intermediate_size=12800
    ),
}

PAPER_TOP8 = {  # method.md section 4
    "llama-3.1-8b-instruct": [(13, 18), (13, 1), (14, 13), (13, 21), (14, 31), (13, 13), (8, 11), (14, 20)],
    "mistral-7b-instruct": [(15, 21), (15, 1), (16, 12), (15, 7), (9, 26), (12, 11), (12, 7), (18, 0)],
    "mistral-7b-instruct-prune0.5": [(15, 21), (15, 1), (15, 7), (9, 26), (12, 11), (12, 7), (15, 26), (7, 18)],
    "granite-3.2-8b-instruct": [(19, 1), (17, 20), (19, 19), (34, 28), (17, 25), (17, 7), (19, 4), (19, 31)],
    "granite-3.2-8b-instruct-prune0.5": [(19, 1), (17, 20), (19, 19), (17, 25), (17, 7), (19, 4), (19, 31), (16, 31)],
}


@pytest.mark.parametrize("name", sorted(PAPER_TOP8))
def test_presets_hold_the_published_heads(name):
    assert HeadConfig.load(name).heads == PAPER_TOP8[name]


@pytest.mark.parametrize("name", [n for n in preset_names() if not n.startswith(("phi", "smollm2", "gemma3"))])
def test_paper_presets_validate_against_their_model_configs(name):
    config = HeadConfig.load(name)
    family = next(key for key in PAPER_CONFIGS if name.startswith(key))
    config.validate_for(PAPER_CONFIGS[family])


def test_presets_resolve_from_model_ids_and_prune_as_published():
    mistral = find_preset("mistralai/Mistral-7B-Instruct-v0.2")
    assert mistral.name == "mistral-7b-instruct"
    assert mistral.num_layers_needed(32) == 19  # layers 0..18 are built
    assert find_preset("mistralai/Mistral-7B-Instruct-v0.3").heads == mistral.heads
    assert HeadConfig.load("mistral-7b-instruct-prune0.5").num_layers_needed(32) == 16
    assert find_preset("/local/models/Llama-3.1-8B-Instruct").name == "llama-3.1-8b-instruct"
    assert find_preset("meta-llama/Llama-3.1-8B-Instruct", method="qr").name == "llama-3.1-8b-instruct-qr"
    assert find_preset("someone/unknown-model") is None


def test_granite_preset_uses_the_official_logit_scale():
    assert HeadConfig.load("granite-3.2-8b-instruct").scoring.logit_scale == pytest.approx(128**-0.5)


def test_heads_that_do_not_fit_the_model_are_rejected_by_name():
    small = LlamaConfig(num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8)
    with pytest.raises(HeadConfigError, match=r"head \[18, 0\].*layer 18 does not exist"):
        HeadConfig(heads=[(15, 21), (18, 0)]).validate_for(small)
    with pytest.raises(HeadConfigError, match=r"head \[3, 40\].*head 40 does not exist"):
        HeadConfig(heads=[(3, 40)]).validate_for(small)
    with pytest.raises(HeadConfigError, match="made for 32 layers"):
        HeadConfig.load("mistral-7b-instruct-prune0.5").validate_for(
            LlamaConfig(num_hidden_layers=20, num_attention_heads=32, num_key_value_heads=8)
        )


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(heads=[]), "needs at least one head"),
        (dict(heads=[(1, 2), (1, 2)]), "listed twice"),
        (dict(heads=[(-1, 2)]), "negative"),
        (dict(heads=[(9, 1)], num_layers_to_keep=5), "drops layer 9"),
        (dict(heads="3-1,banana"), "not a 'layer-head' pair"),
    ],
)
def test_malformed_configs_fail_clearly(bad, message):
    with pytest.raises(HeadConfigError, match=message):
        HeadConfig(**bad)


def test_converters_round_trip(tmp_path):
    config = HeadConfig.from_qrhead_string("14-22, 13-16,8-11")
    assert config.heads == [(14, 22), (13, 16), (8, 11)] and config.method == "qr"
    assert config.to_qrhead_string() == "14-22,13-16,8-11"

    hook = {
        "model_info": {"model_id": "mistralai/Mistral-7B-Instruct-v0.3"},
        "params": {"important_heads": [[15, 21], [15, 1]]},
    }
    from_hook = HeadConfig.from_vllm_hook(hook)
    assert from_hook.heads == [(15, 21), (15, 1)]
    assert from_hook.model_ids == ["mistralai/Mistral-7B-Instruct-v0.3"]
    assert from_hook.to_vllm_hook()["params"]["important_heads"] == [[15, 21], [15, 1]]
    path = tmp_path / "hook.json"
    path.write_text(json.dumps(hook))
    assert HeadConfig.load(path).heads == from_hook.heads  # a vLLM-Hook file loads directly

    saved = tmp_path / "heads.json"
    config.to_json(saved)
    assert HeadConfig.load(saved) == config


def test_official_score_tables_convert_with_pruning_aware_selection(tmp_path):
    scores = {"0-0": 0.1, "3-1": 0.9, "5-2": 0.8, "1-4": 0.5, "2-2": 0.4}
    assert HeadConfig.from_scores(scores, num_heads=2).heads == [(3, 1), (5, 2)]
    assert HeadConfig.from_scores(scores, num_heads=2).num_layers_to_keep is None
    pruned = HeadConfig.from_scores(scores, num_heads=2, num_layers_to_keep=4)
    assert pruned.heads == [(3, 1), (1, 4)] and pruned.num_layers_to_keep == 4
    path = tmp_path / "scores.json"
    path.write_text(json.dumps(scores))
    with pytest.raises(HeadConfigError, match="score table"):
        HeadConfig.load(path)  # a score table is not a config: say how to convert it
    assert HeadConfig.from_scores(path, num_heads=1).heads == [(3, 1)]


def test_unknown_preset_or_missing_file_is_a_clear_error():
    with pytest.raises(HeadConfigError, match="not a shipped preset"):
        HeadConfig.load("no-such-model")


def test_top_heads_keeps_order_and_records_the_count():
    config = HeadConfig.load("llama-3.1-8b-instruct").top_heads(3)
    assert config.heads == PAPER_TOP8["llama-3.1-8b-instruct"][:3]
    assert config.provenance.num_heads == 3 and config.num_layers_needed(32) == 15


def test_offline_model_presets_fit_their_models():
    from transformers import Gemma3TextConfig

    smol = LlamaConfig(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576)
    gemma = Gemma3TextConfig(
        num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1, hidden_size=640, head_dim=256
    )
    for name, config in [
        ("smollm2-135m-instruct", smol),
        ("smollm2-135m-instruct-qr", smol),
        ("gemma3-270m", gemma),
        ("gemma3-270m-qr", gemma),
    ]:
        preset = HeadConfig.load(name)
        preset.validate_for(config)
        assert find_preset(preset.model_ids[0], method=preset.method).name == name


def test_method_none_follows_the_heads_and_a_contradiction_is_an_error():
    from core_rerank.head_config import resolve_heads

    qr = HeadConfig.load("smollm2-135m-instruct-qr")
    assert resolve_heads(qr, None, ["smollm2-135m-instruct"]) is qr
    assert resolve_heads(qr, "qr", ["smollm2-135m-instruct"]) is qr
    assert resolve_heads(None, None, ["smollm2-135m-instruct"]).name == "smollm2-135m-instruct"  # core preset
    assert resolve_heads(None, "icr", ["anything"]).method == "icr"
    with pytest.raises(ValueError, match=r"method='core' contradicts.*'qr' heads"):
        resolve_heads(qr, "core", ["smollm2-135m-instruct"])
    with pytest.raises(ValueError, match="method='icr' uses every head"):
        resolve_heads("smollm2-135m-instruct", "icr", [])
    with pytest.raises(ValueError, match="unknown method"):
        resolve_heads(None, "bm25", ["smollm2-135m-instruct"])


def test_layers_to_build_none_all_or_a_count():
    from core_rerank.layers import layers_to_build

    core = HeadConfig(heads=[(3, 1), (9, 0)])
    assert layers_to_build(core, None, 30) == 10  # as many as the heads need
    assert layers_to_build(core.model_copy(update={"num_layers_to_keep": 15}), None, 30) == 15
    assert layers_to_build(HeadConfig(method="icr"), None, 30) == 30
    assert layers_to_build(core, "all", 30) == 30
    assert layers_to_build(core, 12, 30) == 12
    with pytest.raises(HeadConfigError, match="drops layer 9"):
        layers_to_build(core, 5, 30)
    assert core.num_layers_needed() == 10  # no model at hand: what the heads need
    for bad in ("auto", "12", 0, 31, True):
        with pytest.raises(ValueError):
            layers_to_build(core, bad, 30)


def test_older_files_spell_the_head_count_k():
    old = HeadConfig.load("llama-3.1-8b-instruct").to_dict()
    old["provenance"]["k"] = old["provenance"].pop("num_heads")
    assert HeadConfig.from_dict(old).provenance.num_heads == 8
    assert "k" not in HeadConfig.from_dict(old).to_dict()["provenance"]
