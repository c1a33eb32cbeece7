"""Layer probe: shapes and hygiene across architectures, a planted language-specific layer every method
must find, selection, fingerprints and the `slam probe` CLI.

    .venv/bin/python -m pytest -q tests/test_probe.py
"""

import json
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from slam.config import ProbeConfig
from slam.errors import SlamError
from slam.probe import run_probe, select_layers
from slam.probe.report import render_markdown
from slam.probe.run import model_fingerprint
from slam.testing import tiny_model, tiny_tokenizer

WORDS = {  # parallel word lists (same index = same word)
    "en": "tom has apples and buys more how many does he now cat sat on red mat".split(),
    "de": "tom hat äpfel und kauft mehr wie viele hat er jetzt katze saß auf roter matte".split(),
    "es": "tom tiene manzanas y compra más cuántas muchas tiene él ahora gato sentó en roja alfombra".split(),
    "ru": "том имеет яблоки и покупает ещё сколько много имеет он теперь кот сидел на красном коврике".split(),
}
assert len({len(w) for w in WORDS.values()}) == 1
LANGS = list(WORDS)


def make_records(n: int = 12, seed: int = 0) -> list[dict]:
    """Parallel synthetic questions: the same word positions and numbers in every language."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        idx = [rng.randrange(len(WORDS["en"])) for _ in range(rng.randint(4, 12))]
        nums = [str(rng.randint(1, 99)) for _ in range(2)]
        for lang in LANGS:
            q = " ".join([WORDS[lang][j] for j in idx] + nums)
            out.append({"lang": lang, "problem_id": f"p{i}", "question": q})
    return out


@pytest.fixture(scope="module")
def records():
    return make_records()


@pytest.fixture(scope="module")
def tok(records):
    return tiny_tokenizer([r["question"] for r in records] * 3, vocab_size=600)


def exclusive_token_ids(tok, records, lang: str) -> list[int]:
    """Token ids that occur in `lang`'s questions and in no other language's."""
    seen: dict[str, set[int]] = {}
    for r in records:
        seen.setdefault(r["lang"], set()).update(tok(r["question"], add_special_tokens=False)["input_ids"])
    others = set().union(*(s for k, s in seen.items() if k != lang))
    return sorted(seen[lang] - others)


def planted_llama(tok, x_ids: list[int], layer: int, num_layers: int = 4, n_neurons: int = 16,
                  write: bool = False):
    """A tiny llama in which `n_neurons` FFN neurons of `layer` (and only those) fire exactly on tokens
    `x_ids`. Embeddings get a shared direction c on every token and a direction v on x_ids; every
    other weight that reads or writes the residual stream has span(v, c) projected out, so only the
    planted gate rows (proportional to v - c) can see the language: pre-activation +s on x_ids, -s
    elsewhere. With write=False the planted neurons write nothing back (a pure FFN signal); with
    write=True they write a fixed direction, which the residual stream carries upwards (for cosine)."""
    model = tiny_model("llama", num_layers=num_layers, vocab_size=len(tok))
    h = model.config.hidden_size
    basis, _ = torch.linalg.qr(torch.randn(h, 3, generator=torch.Generator().manual_seed(1)))
    v, c, d = basis.T
    q = torch.eye(h) - torch.outer(v, v) - torch.outer(c, c)
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        emb.copy_(emb @ q + c)
        emb[x_ids] += 2 * v
        for lyr in model.model.layers:
            a, m = lyr.self_attn, lyr.mlp
            for lin in (a.q_proj, a.k_proj, a.v_proj, m.gate_proj, m.up_proj):
                lin.weight.copy_(lin.weight @ q)
            for lin in (a.o_proj, m.down_proj):
                lin.weight.copy_(q @ lin.weight)
        m = model.model.layers[layer].mlp
        m.gate_proj.weight[:n_neurons] = 4 * (v - c)
        m.down_proj.weight[:, :n_neurons] = 0
        if write:
            m.up_proj.weight[:n_neurons] = 4 * (v - c)
            m.down_proj.weight[:, :n_neurons] = 3 * d[:, None]
    return model


# --------------------------------------------------------------------------------------------------
# Across architectures

ARCHS = ["llama", "qwen2", "phi3", "gpt2", "opt", "gpt_neox", "gemma", "falcon", "bloom"]


ARCH_METHODS = [(a, "msd") for a in ARCHS] + [(a, m) for a in ("llama", "phi3", "gpt2", "opt", "gpt_neox")
                                              for m in ("lape", "cosine")]


@pytest.mark.parametrize("arch,method", ARCH_METHODS)
def test_shapes_finite_and_hooks_removed(arch, method, tok, records):
    model = tiny_model(arch, num_layers=3, vocab_size=len(tok))
    r = run_probe(model, tok, records, ProbeConfig(method=method, top_k=2, batch_size=4), progress=False)
    assert r["num_layers"] == 3 and len(r["scores"]) == 3 and sorted(r["ranking"]) == [0, 1, 2]
    assert all(np.isfinite(r["scores"]))
    assert r["langs"][0] == "en" and set(r["langs"]) == set(LANGS)
    assert len(r["selected_layers"]) == 2 and r["selected_layers"] == sorted(r["selected_layers"])
    for name, m in r["stats"]["matrices"].items():
        assert np.array(m).shape == (3, len(LANGS)), name
        assert np.isfinite(np.array(m)).all()
    assert r["stats"]["questions"] == 12 and all(t > 0 for t in r["stats"]["tokens"].values())
    for mod in model.modules():
        assert not mod._forward_hooks and not mod._forward_pre_hooks
    json.dumps(r)  # probe.json must serialise as is


# FFN neuron activations written out by hand per architecture, from the MLP's input x
BY_HAND = {
    "llama": lambda mlp, x: mlp.act_fn(mlp.gate_proj(x)),
    "phi3": lambda mlp, x: mlp.activation_fn(mlp.gate_up_proj(x)[..., : mlp.down_proj.in_features]),
    "gpt2": lambda mlp, x: mlp.act(mlp.c_fc(x)),
}


@pytest.mark.parametrize("arch", list(BY_HAND))
def test_fire_rate_matches_a_direct_computation(arch, tok, records):
    """The hook path (fast sign test, fused halves, pre-hook on fc2) equals act(x) > 0 computed by hand."""
    model = tiny_model(arch, num_layers=2, vocab_size=len(tok))
    # balance_tokens off: every token counts, as in the computation by hand
    r = run_probe(model, tok, records, ProbeConfig(method="msd", top_k=1, batch_size=5, balance_tokens=False),
                  progress=False)
    layers = model.transformer.h if arch == "gpt2" else model.model.layers
    mlp = layers[1].mlp
    captured = []
    handle = mlp.register_forward_pre_hook(lambda _m, a: captured.append(a[0].detach()))
    fired, n = 0.0, 0
    with torch.no_grad():
        for q in [x["question"] for x in records if x["lang"] == "de"]:
            ids = tok(q, return_tensors="pt", return_special_tokens_mask=True)
            model(input_ids=ids["input_ids"])
            keep = ~ids["special_tokens_mask"][0].bool()
            fired += float((BY_HAND[arch](mlp, captured[-1])[0][keep] > 0).float().mean(1).sum())
            n += int(keep.sum())
    handle.remove()
    assert n == r["stats"]["tokens"]["de"]
    np.testing.assert_allclose(r["stats"]["matrices"]["fire_rate"][1][1], fired / n, rtol=1e-5)


@pytest.mark.parametrize("method", ["msd", "lape", "cosine"])
def test_stable_under_batch_size(method, tok, records):
    model = planted_llama(tok, exclusive_token_ids(tok, records, "ru"), layer=2)
    runs = [run_probe(model, tok, records, ProbeConfig(method=method, top_k=2, batch_size=b, fire_fraction=0.3),
                      progress=False) for b in (1, 5, 12)]
    for r in runs[1:]:
        assert r["ranking"] == runs[0]["ranking"]
        np.testing.assert_allclose(r["scores"], runs[0]["scores"], rtol=1e-4, atol=1e-6)
        assert r["data_fingerprint"] == runs[0]["data_fingerprint"]


def test_deterministic_report(tok, records):
    model = tiny_model("qwen2", num_layers=3, vocab_size=len(tok))
    a = run_probe(model, tok, records, ProbeConfig(method="lape", top_k=2), progress=False)
    b = run_probe(model, tok, list(reversed(records)), ProbeConfig(method="lape", top_k=2), progress=False)
    assert json.dumps(a) == json.dumps(b)


# --------------------------------------------------------------------------------------------------
# The planted truth


@pytest.mark.parametrize("layer", [1, 2, 3])
@pytest.mark.parametrize("method", ["msd", "lape"])
def test_neuron_methods_find_the_planted_layer(method, layer, tok, records):
    x_ids = exclusive_token_ids(tok, records, "ru")
    assert len(x_ids) >= 10
    model = planted_llama(tok, x_ids, layer=layer)
    # all-or-nothing plant in a random model whose every layer sees other tokens per language: checked on the
    # raw statistic (msd's fixed bar at 0.3); calibration is checked by the graded tests below
    cfg = ProbeConfig(method=method, top_k=1, selection="top-k", fallback="none", rank_by="raw", activation="fixed",
                      fire_fraction=0.3)
    r = run_probe(model, tok, records, cfg, progress=False)
    assert r["ranking"][0] == layer and r["probe_selected_layers"] == [layer] == r["selected_layers"]
    # the default policy trains the paper's bottom-k and reports the probe's own choice beside it
    if method == "msd" and layer == 2:
        d = run_probe(model, tok, records, replace(cfg, selection=ProbeConfig().selection), progress=False)
        assert d["selection"] == "bottom-k" and d["selected_layers"] == [0] and d["probe_selected_layers"] == [layer]
        assert f"not the probe's choice: its own top-k is `{layer}`" in render_markdown(d)
    second = sorted(r["scores"], reverse=True)[1]
    assert r["scores"][layer] > 2 * second + 1e-3, r["scores"]
    ru = r["langs"].index("ru")
    if method == "msd":  # ru activates the 16 planted neurons (a quarter of the layer), nobody else does
        active = np.array(r["stats"]["matrices"]["active"][layer])
        assert active[ru] >= 16 / 64 and active.argmax() == ru
    else:  # the specific neurons found there belong to ru
        spec = np.array(r["stats"]["matrices"]["specific"][layer])
        assert spec[ru] > 0 and spec.argmax() == ru


def test_unplanted_twin_does_not_single_out_that_layer(tok, records):
    """Control: the same construction without the planted rows gives no clear winner at that layer."""
    x_ids = exclusive_token_ids(tok, records, "ru")
    model = planted_llama(tok, x_ids, layer=2, n_neurons=0)
    r = run_probe(model, tok, records, ProbeConfig(method="msd", top_k=1, rank_by="raw", activation="fixed",
                                                   fire_fraction=0.3), progress=False)
    assert r["scores"][2] < 1e-3


def test_cosine_sees_a_planted_write_where_it_enters_the_residual(tok, records):
    x_ids = exclusive_token_ids(tok, records, "ru")
    model = planted_llama(tok, x_ids, layer=2, write=True)
    r = run_probe(model, tok, records, ProbeConfig(method="cosine", top_k=1, rank_by="raw"), progress=False)
    sim = np.array(r["stats"]["matrices"]["similarity_en"])  # (layers, langs)
    ru, de = r["langs"].index("ru"), r["langs"].index("de")
    jumps = np.diff(sim[:, ru])
    assert jumps.argmin() == 1 and jumps[1] < -0.2  # ru's similarity drops entering layer 2
    assert abs(sim[2, de] - sim[1, de]) < 0.05  # other languages are untouched
    assert r["ranking"][0] >= 2


def test_cosine_of_a_language_with_itself_is_one(tok, records):
    twin = records + [{**x, "lang": "xx"} for x in records if x["lang"] == "en"]
    r = run_probe(tiny_model("llama", num_layers=2, vocab_size=len(tok)), tok, twin,
                  ProbeConfig(method="cosine", langs=["en", "xx"], top_k=1), progress=False)
    np.testing.assert_allclose(r["scores"], 0.0, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# Selection, validation, fingerprints

SEL_TABLE = [
    # scores, k, selection, expected
    ([0.1, 0.9, 0.2, 0.8, 0.7], 2, "top-k", [1, 3]),
    ([0.1, 0.9, 0.2, 0.8, 0.7], 3, "top-k", [1, 3, 4]),
    ([0.1, 0.9, 0.2, 0.8, 0.7], 2, "contiguous", [3, 4]),
    ([0.1, 0.9, 0.2, 0.8, 0.7], 3, "contiguous", [1, 2, 3]),
    ([0.5, 0.5, 0.5, 0.5], 2, "top-k", [0, 1]),  # ties go to lower layers
    ([0.5, 0.5, 0.5, 0.5], 2, "contiguous", [0, 1]),
    ([0.3, 0.1, 0.2], 3, "contiguous", [0, 1, 2]),
]


@pytest.mark.parametrize("scores,k,selection,expected", SEL_TABLE)
def test_select_layers(scores, k, selection, expected):
    assert select_layers({"scores": scores}, k, selection) == expected


@pytest.mark.parametrize("report,k,selection,match", [
    ({"scores": [0.1, 0.2]}, 3, "top-k", r"k must be an integer in 1\.\.2"),
    ({"scores": [0.1, 0.2]}, 0, "top-k", "k must be"),
    ({"scores": [0.1, 0.2]}, 1, "best", "selection must be one of"),
    ({}, 1, "top-k", "no 'scores'"),
])
def test_select_layers_rejects_bad_input(report, k, selection, match):
    with pytest.raises(SlamError, match=match):
        select_layers(report, k, selection)


@pytest.mark.parametrize("kwargs,records_filter,match", [
    ({"method": "msd", "langs": ["de", "ru"]}, None, "add 'en'"),
    ({"method": "lape", "langs": ["en", "fr"]}, None, r"no probe questions for language\(s\) fr"),
    ({"method": "svd"}, None, "method must be one of"),
    ({"top_k": 9}, None, r"top_k must be in 1\.\.2"),
    ({"method": "lape"}, lambda r: not (r["lang"] == "ru" and r["problem_id"] != "p0")
     and not (r["lang"] == "en" and r["problem_id"] == "p0"), "no problem_id is present in all"),
    ({"langs": ["en"]}, None, "need at least 2"),
])
def test_bad_probe_input_is_one_clear_error(kwargs, records_filter, match, tok, records):
    recs = [r for r in records if records_filter(r)] if records_filter else records
    with pytest.raises(SlamError, match=match):
        run_probe(tiny_model("llama", num_layers=2, vocab_size=len(tok)), tok, recs,
                  ProbeConfig(**{"top_k": 1, **kwargs}), progress=False)


def test_model_fingerprint_is_dtype_independent_and_weight_sensitive():
    m = tiny_model("llama", num_layers=2)
    fp = model_fingerprint(m)
    assert model_fingerprint(tiny_model("llama", num_layers=2).to(torch.bfloat16)) == fp
    with torch.no_grad():
        m.model.layers[1].mlp.up_proj.weight[0, 0] += 1.0
    assert model_fingerprint(m) != fp


# --------------------------------------------------------------------------------------------------
# Calibration: a graded planted signal every method must find, and a null where none may be claimed

X_WORDS, FILLER = ["zorp", "quix", "vlem"], ["bam", "dot", "fen", "gup", "hix"]
GRADED_LANGS = ["en", "de", "es", "ru"]


def graded_records(rates: dict[str, float], n: int = 32, words: int = 40, seed: int = 0) -> list[dict]:
    """Parallel questions whose only language difference is how often trigger words occur (rates[lang])."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        for lang in GRADED_LANGS:
            ws = [rng.choice(X_WORDS) if rng.random() < rates.get(lang, 0.3) else rng.choice(FILLER)
                  for _ in range(words)]
            out.append({"lang": lang, "problem_id": f"g{i}", "question": " ".join(ws)})
    return out


@pytest.fixture(scope="module")
def graded_tok():
    texts = [r["question"] for r in graded_records({"ru": 0.6}) + graded_records({"ru": 0.45})]
    return tiny_tokenizer(texts * 2, vocab_size=300)


def graded_model(tok, layer: int, write: bool = False):
    """planted_llama where every token looks the same to every weight except the planted neurons (all
    embeddings share one row outside span(v, c), and +-2v has the same norm either way): those fire exactly
    on trigger-word tokens, so a language's firing rate there is its trigger-word rate, and nothing else
    differs between languages."""
    x_ids = sorted({t for w in X_WORDS for t in tok(" " + w, add_special_tokens=False)["input_ids"]}
                   | {t for w in X_WORDS for t in tok(w, add_special_tokens=False)["input_ids"]})
    f_ids = {t for w in FILLER for s in (w, " " + w) for t in tok(s, add_special_tokens=False)["input_ids"]}
    assert not set(x_ids) & f_ids, "trigger and filler words share tokens"
    model = planted_llama(tok, x_ids, layer=layer, write=write)
    h = model.config.hidden_size
    basis, _ = torch.linalg.qr(torch.randn(h, 3, generator=torch.Generator().manual_seed(1)))  # as planted_llama
    v = basis.T[0]
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        shared = emb[min(f_ids)].clone()  # a filler row: e @ q + c, no v
        emb.copy_((shared - 2 * v).expand_as(emb).clone())  # -2v / +2v: the same norm, so RMSNorm scales
        emb[x_ids] += 4 * v                                  # every token alike and only the gate sees v
    return model


@pytest.mark.parametrize("method", ["msd", "lape"])
def test_graded_signal_is_found_significant_and_stable(method, graded_tok):
    model = graded_model(graded_tok, layer=2)
    # two languages fire 0.6 vs 0.3: leaving any one language out still leaves a difference to find
    r = run_probe(model, graded_tok, graded_records({"ru": 0.6, "de": 0.6}),
                  # lape's bar is a quantile of all probabilities; this toy model's other neurons fire on ~0%
                  # or ~100% of tokens, so a 0.6-rate neuron clears only a lower quantile than real models need
                  ProbeConfig(method=method, top_k=1, lape_prob_quantile=0.3), progress=False)
    assert r["ranking"][0] == 2 and r["probe_selected_layers"] == [2], r["scores"]
    assert 2 in r["stability"]["significant_layers"] and r["null"]["p_values"][2] <= 0.05
    assert r["stability"]["split_half_tau"]["mean"] >= 0.6 and r["stability"]["split_half_overlap"]["mean"] >= 0.8


@pytest.mark.xfail(strict=True, reason="known: msd's per-neuron activation bar (mean over languages + margin) loses "
                   "the signal when 2 of the 3 remaining languages carry it (without es: en .3, de .6, ru .6), so "
                   "leave-one-language-out flags this clear plant as unstable; to be fixed in the probe")
def test_graded_signal_survives_leaving_any_language_out(graded_tok):
    model = graded_model(graded_tok, layer=2)
    r = run_probe(model, graded_tok, graded_records({"ru": 0.6, "de": 0.6}),
                  ProbeConfig(method="msd", top_k=1, selection="top-k"), progress=False)
    assert r["stable"] and r["selected_layers"] == [2] and r["fallback"] is None, r["warnings"]


@pytest.mark.parametrize("method", ["msd", "lape", "cosine"])
def test_null_probe_says_no_stable_selection_and_falls_back_to_bottom_k(method, graded_tok):
    model = graded_model(graded_tok, layer=2, write=True)
    r = run_probe(model, graded_tok, graded_records({"ru": 0.45, "en": 0.45, "de": 0.45, "es": 0.45}),
                  ProbeConfig(method=method, top_k=1, selection="top-k", lape_prob_quantile=0.3), progress=False)
    assert not r["stable"] and r["warnings"]
    assert r["fallback"] == "bottom-k" and r["selected_layers"] == [0]
    assert any("bottom-k" in w for w in r["warnings"])
