"""Evaluation harness (slam.evaluate) on tiny random models: generation, scoring, reports, CLI.

    .venv/bin/python -m pytest -q tests/test_eval.py
"""

import json
import re

import pytest
import torch

from slam import evaluate, generation
from slam.errors import SlamError
from slam.testing import TINY_ARCHS, tiny_model, tiny_tokenizer

QUESTIONS = [
    "Janet has 3 apples and buys 5 more. How many apples does she have?",
    "x",
    "What is 12 + 30?",
    "A farmer has 17 sheep; all but 9 run away. How many are left? Think step by step, please.",
    "Lena hat 4 Birnen.",
]


def _rec(lang, i, question, gold):
    from slam.data.records import Record

    return Record(id=f"p{i}-{lang}", problem_id=f"p{i}", lang=lang, question=question, answer=None, gold=gold,
                  source="test")


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    # initializer_range 0.3: the default 0.02 makes a random model emit the same tokens whatever the
    # prompt, which would hide padding bugs
    return tiny_model("llama", 2, vocab_size=max(len(tok), 256), initializer_range=0.3)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt"])  # rotary, absolute, offset positions
def test_batched_generation_matches_one_at_a_time(tok, arch):
    m = tiny_model(arch, 2, vocab_size=max(len(tok), 256), initializer_range=0.3)
    batched, n_batched = generation.generate(m, tok, QUESTIONS, batch_size=len(QUESTIONS), max_new_tokens=10)
    single = [generation.generate(m, tok, [q], batch_size=1, max_new_tokens=10)[0][0] for q in QUESTIONS]
    assert batched == single
    assert len(set(batched)) > 1, "outputs do not depend on the prompt: the comparison would prove nothing"
    assert 0 < n_batched <= 10 * len(QUESTIONS)


def test_right_padding_would_break_the_comparison(tok, model):
    """Control for the test above: the same batch right-padded gives different greedy answers."""
    from slam.prompts import encode_prompt

    prompts = [encode_prompt(tok, q) for q in QUESTIONS]
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, :len(p)] = torch.tensor(p)
        mask[i, :len(p)] = 1
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=10,
                             pad_token_id=tok.pad_token_id)
    right = [tok.decode(out[i, width:], skip_special_tokens=True).strip() for i in range(len(prompts))]
    single = [generation.generate(model, tok, [q], max_new_tokens=10)[0][0] for q in QUESTIONS]
    assert right != single


def test_generation_stops_at_eos(model):
    """Declare the token the model emits first as EOS: that row stops at once, the others go on."""
    from slam.prompts import encode_prompt

    t = tiny_tokenizer()
    ids = torch.tensor([encode_prompt(t, QUESTIONS[0])])
    first = model.generate(input_ids=ids, do_sample=False, max_new_tokens=1, pad_token_id=0)[0, -1].item()
    t.eos_token = t.convert_ids_to_tokens(first)
    outs, n = generation.generate(model, t, QUESTIONS, batch_size=len(QUESTIONS), max_new_tokens=8)
    assert outs[0] == ""  # stopped at the EOS, which is special and not decoded
    others, n_others = generation.generate(model, t, QUESTIONS[1:], max_new_tokens=8)
    assert outs[1:] == others and n == n_others + 1 and n_others > 0


MORE_QUESTIONS = [*QUESTIONS, "12", "Tom reads 4 pages a day for 7 days.", "Wie viel ist 3 + 5?", "y z",
                  "A train leaves at 3 pm and arrives at 7 pm; how long is the trip in minutes, exactly?"]


def _with_transformers_generate(monkeypatch, fn):
    """Run `fn` with generation forced through model.generate (the reference our loop must match)."""
    with monkeypatch.context() as m:
        m.setattr(generation, "_supports_own_loop", lambda model: False)
        return fn()


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_own_decoding_loop_picks_the_tokens_transformers_generate_picks(tok, arch, monkeypatch):
    """Continuous batching (rows leave and join), the shared prompt prefix run once, padding between
    prefix and question: none of it may change a token. Batch sizes 1 (one row at a time), 3 (refills of
    one row, joins that widen either side) and 16 (all at once, rows leaving)."""
    m = tiny_model(arch, 2, vocab_size=max(len(tok), 256), initializer_range=0.3)
    assert generation._supports_own_loop(m), f"{arch} would silently take the slow path"
    ref, n_ref = _with_transformers_generate(monkeypatch, lambda: generation.generate(
        m, tok, MORE_QUESTIONS, batch_size=len(MORE_QUESTIONS), max_new_tokens=12, stop_strings=()))
    for bs in (1, 3, 16):
        out, n = generation.generate(m, tok, MORE_QUESTIONS, batch_size=bs, max_new_tokens=12, stop_strings=())
        assert out == ref, f"{arch}, batch {bs}"
        # generate's count drops a row's trailing pad tokens; ours counts every token generated
        assert n_ref <= n <= 12 * len(MORE_QUESTIONS)


def test_the_comparison_above_sees_rows_of_different_lengths(tok):
    """Control: rows must finish at different steps (EOS), or leaving/joining would go untested."""
    m = tiny_model("llama", 2, vocab_size=max(len(tok), 256), initializer_range=0.3)
    lengths = set()
    for q in MORE_QUESTIONS:
        lengths.add(generation.generate(m, tok, [q], max_new_tokens=12, stop_strings=())[1])
    assert len(lengths) >= 3 and min(lengths) < 12


@pytest.mark.parametrize("kind", ["string", "pattern"])
def test_own_loop_stops_where_transformers_generate_stops(tok, model, monkeypatch, kind):
    """A stop string (or pattern) taken from the middle of one row's free completion: both loops cut the
    completion at the same place. With a pattern both stop on the same token; with a string ours stops as
    soon as the text contains it, transformers' only once it ends a token, so ours may stop earlier."""
    free, _ = generation.generate(model, tok, MORE_QUESTIONS, max_new_tokens=16, stop_strings=())
    text = next(t for t in free if len(t) > 12)
    stop = text[6:9]
    kw = {"stop_strings": (stop,)} if kind == "string" else {"stop_strings": (), "stop_pattern": re.escape(stop)}
    ref = _with_transformers_generate(monkeypatch, lambda: generation.generate(
        model, tok, MORE_QUESTIONS, batch_size=4, max_new_tokens=16, **kw))
    ours = generation.generate(model, tok, MORE_QUESTIONS, batch_size=4, max_new_tokens=16, **kw)
    assert ours[0] == ref[0]
    assert ours[1] == ref[1] if kind == "pattern" else ours[1] <= ref[1]
    assert ours[1] < sum(len(tok(t).input_ids) for t in free) + len(free), "nothing stopped early"


def test_generation_config_with_logits_processing_goes_through_transformers(tok, monkeypatch):
    """A model whose generation_config asks for a repetition penalty is decoded by model.generate, which
    applies it (our loop takes the plain argmax)."""
    m = tiny_model("llama", 2, vocab_size=max(len(tok), 256), initializer_range=0.3)
    plain, _ = generation.generate(m, tok, MORE_QUESTIONS, max_new_tokens=12, stop_strings=())
    m.generation_config.repetition_penalty = 5.0
    assert not generation._supports_own_loop(m)
    penalised, _ = generation.generate(m, tok, MORE_QUESTIONS, max_new_tokens=12, stop_strings=())
    assert penalised != plain


@pytest.mark.parametrize(("text", "expected"), [
    ("The answer is 7.\n\n### Instruction:\nTom has 9 apples", "The answer is 7."),
    ("3 + 4 = 7\n### Input:\n12", "3 + 4 = 7"),
    ("The answer is 7.", "The answer is 7."),
    ("### Instruction: 5", ""),
])
def test_alpaca_completion_is_cut_before_an_invented_next_turn(text, expected):
    cut = generation.cut(text, generation.STOP_STRINGS["alpaca"])
    assert cut == expected
    assert generation.cut(text, generation.STOP_STRINGS["chat"]) == text.strip()


def test_evaluate_model_counts_and_scores_per_language(tok, model):
    langs = ["en", "de", "sw"]
    records = [_rec(lang, i, q, 0.0) for lang in langs for i, q in enumerate(QUESTIONS)]
    completions, _ = generation.generate(model, tok, [r.question for r in records], max_new_tokens=6)
    # a scorer we control: "answer" = completion length; make exactly the en + first two de golds right
    score = {r.id: float(len(c)) for r, c in zip(records, completions, strict=True)}
    right = {r.id for r in records if r.lang == "en"} | {"p0-de", "p1-de"}
    records = [_rec(r.lang, int(r.problem_id[1:]), r.question, score[r.id] if r.id in right else -1.0)
               for r in records]

    report = evaluate.evaluate_model(model, tok, records, batch_size=4, max_new_tokens=6, progress=False,
                                     extract=lambda text: float(len(text)))
    per = report["per_lang"]
    assert list(per) == ["en", "de", "sw"]  # English first
    assert {k: (v["correct"], v["total"]) for k, v in per.items()} == {"en": (5, 5), "de": (2, 5), "sw": (0, 5)}
    assert per["de"]["accuracy"] == pytest.approx(0.4)
    assert report["average"] == pytest.approx((1.0 + 0.4 + 0.0) / 3)
    assert report["average_non_en"] == pytest.approx(0.2)
    assert report["english"] == 1.0
    assert len(report["samples"]) == 15 and sum(s["correct"] for s in report["samples"]) == 7
    assert [s["id"] for s in report["samples"]] == [r.id for r in records]  # input order, not length order
    assert report["meta"]["questions"] == 15 and report["meta"]["new_tokens"] > 0


def test_report_without_english_has_no_english_score(tok, model):
    records = [_rec("de", i, q, 1.0) for i, q in enumerate(QUESTIONS[:2])]
    report = evaluate.evaluate_model(model, tok, records, max_new_tokens=4, progress=False)
    assert report["english"] is None and report["average_non_en"] == report["average"]


def test_batch_size_left_open_follows_the_device(tok, model):
    # CPU decoding is bound by reading the weights: the default batch is the CPU one, and the report says
    # which batch produced it; on an accelerator (KV cache bound) it is the smaller one
    records = [_rec("en", i, q, 1.0) for i, q in enumerate(QUESTIONS)]
    report = evaluate.evaluate_model(model, tok, records, max_new_tokens=3, progress=False)
    assert report["meta"]["batch_size"] == generation.DEFAULT_BATCH_SIZE["cpu"] == generation.default_batch_size(model)
    assert evaluate.evaluate_model(model, tok, records, batch_size=2, max_new_tokens=3,
                                   progress=False)["meta"]["batch_size"] == 2

    class OnAccelerator:
        def parameters(self):
            return iter([torch.nn.Parameter(torch.zeros(1, device="meta"))])

    assert generation.default_batch_size(OnAccelerator()) == generation.DEFAULT_BATCH_SIZE["accelerator"] < 64


def test_bad_requests_are_reported_together(tok, model):
    with pytest.raises(SlamError) as e:
        evaluate.evaluate_model(model, tok, [_rec("en", 0, "q", None)], batch_size=0, max_new_tokens=0,
                                template="vicuna")
    msg = str(e.value)
    for part in ("no gold answer", "batch_size", "max_new_tokens", "vicuna"):
        assert part in msg
    with pytest.raises(SlamError, match="no questions"):
        evaluate.evaluate_model(model, tok, [], progress=False)


def test_chat_template(tok, model):
    records = [_rec("en", 0, QUESTIONS[0], 8.0)]
    with pytest.raises(SlamError, match="chat template"):
        evaluate.evaluate_model(model, tok, records, template="chat", progress=False)
    chat_tok = tiny_tokenizer()
    chat_tok.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                              "{% if add_generation_prompt %}assistant:{% endif %}")
    report = evaluate.evaluate_model(model, chat_tok, records, template="chat", max_new_tokens=4, progress=False)
    assert report["per_lang"]["en"]["total"] == 1 and report["meta"]["template"] == "chat"


def test_tokenizer_without_pad_token_falls_back_to_eos(model):
    t = tiny_tokenizer()
    t.pad_token = None
    outs, _ = generation.generate(model, t, QUESTIONS[:3], max_new_tokens=5)
    assert len(outs) == 3


def _report(accs: dict[str, float]) -> dict:
    samples = []
    for lang, acc in accs.items():
        for i in range(10):
            samples.append({"id": f"{i}-{lang}", "lang": lang, "question": "q", "completion": "c", "pred": 1.0,
                            "gold": 1.0, "correct": i < round(acc * 10)})
    return evaluate.summarize(samples)


def test_compare_table_lists_every_language_with_deltas():
    base, tuned = _report({"en": 0.3, "de": 0.0, "zh": 0.1}), _report({"en": 0.3, "de": 0.5, "sw": 0.2})
    table = evaluate.compare_table(base, tuned).splitlines()
    assert table[0] == "| lang | base (%) | tuned (%) | Δ (points) |"
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]] for line in table[2:]}
    assert rows["en"] == ["30.0", "30.0", "+0.0"]
    assert rows["de"] == ["0.0", "50.0", "+50.0"]
    assert rows["zh"] == ["10.0", "—", "—"] and rows["sw"] == ["—", "20.0", "—"]
    assert rows["**average**"] == ["13.3", "33.3", "+20.0"]


def _check_report_files(read):
    data = json.loads(read("eval.json"))
    assert data["per_lang"]["en"]["total"] == 2
    assert read("eval.png")[:8] == b"\x89PNG\r\n\x1a\n"
    md = read("eval.md").decode()
    assert "| en |" in md and "| de |" in md and "average" in md


def test_write_report_local_and_s3(tok, model, tmp_path, s3_bucket):
    from slam import storage

    records = [_rec(lang, i, q, 1.0) for lang in ("en", "de") for i, q in enumerate(QUESTIONS[:2])]
    report = evaluate.evaluate_model(model, tok, records, max_new_tokens=4, progress=False)
    out = tmp_path / "run" / "eval"
    evaluate.write_report(report, str(out))
    assert sorted(p.name for p in out.iterdir()) == ["eval.json", "eval.md", "eval.png"]  # no temp files left
    _check_report_files(lambda name: (out / name).read_bytes())
    uris = evaluate.write_report(report, f"{s3_bucket}/run/eval")
    assert uris["json"] == f"{s3_bucket}/run/eval/eval.json"
    _check_report_files(lambda name: storage.read_bytes(f"{s3_bucket}/run/eval/{name}"))


# --------------------------------------------------------------------------------------------------
# CLI


@pytest.fixture()
def synth_dir(tmp_path):
    # Latin-script languages only: the loader quarantines English text labelled zh (script check)
    rows = [_rec(lang, i, q, float(i)) for i, q in enumerate(QUESTIONS) for lang in ("en", "de", "sw")]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in rows))
    return tmp_path


def test_cli_evaluate_synthetic(tiny_model_dir, synth_dir, tmp_path, capsys):
    from slam.cli import main

    out = tmp_path / "eval"
    rc = main(["evaluate", "--model", str(tiny_model_dir), "--task", "synthetic", "--data", str(synth_dir),
               "--langs", "en,sw", "--limit", "3", "--max-new-tokens", "5", "--batch-size", "4", "--out", str(out),
               "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| en |" in printed and "| sw |" in printed and "| de |" not in printed
    data = json.loads((out / "eval.json").read_text())
    assert {k: v["total"] for k, v in data["per_lang"].items()} == {"en": 3, "sw": 3}
    assert data["meta"]["task"] == "synthetic" and data["meta"]["max_new_tokens"] == 5


def test_cli_evaluate_base_plus_delta_equals_the_merged_model(tiny_model_dir, synth_dir, tmp_path):
    from slam import delta
    from slam.cli import main
    from slam.freeze import make_plan
    from slam.models import load_model

    model = load_model(tiny_model_dir, device="cpu")
    plan = make_plan(model, [1, 2], ["up", "down"])
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in plan.names:
                p.add_(torch.randn_like(p))
    d = str(tmp_path / "delta")
    delta.save_delta(model, plan, d, {"base_path": str(tiny_model_dir)})
    merged = delta.merge(tiny_model_dir, d, tmp_path / "merged")

    def run(name, *extra):
        args = ["evaluate", "--task", "synthetic", "--data", str(synth_dir), "--max-new-tokens", "6",
                "--out", str(tmp_path / name), "--no-progress", *extra]
        assert main(args) == 0
        return [s["completion"] for s in json.loads((tmp_path / name / "eval.json").read_text())["samples"]]

    with_delta = run("delta", "--model", str(tiny_model_dir), "--delta", d)
    assert with_delta == run("merged", "--model", str(merged))
    assert with_delta != run("base", "--model", str(tiny_model_dir))


@pytest.mark.parametrize(("extra", "message"), [
    (["--task", "synthetic"], "needs --data"),
    (["--task", "synthetic", "--data", "{synth}", "--langs", "en,xx"], "no questions in xx"),
    (["--task", "synthetic", "--data", "{synth}", "--limit", "0", "--batch-size", "0"], "--limit must be >= 1"),
    (["--task", "synthetic", "--data", "{tmp}/nowhere"], "not found"),
])
def test_cli_bad_input_exits_2_with_one_line(tiny_model_dir, synth_dir, tmp_path, capsys, extra, message):
    from slam.cli import main

    extra = [a.format(synth=synth_dir, tmp=tmp_path) for a in extra]
    rc = main(["evaluate", "--model", str(tiny_model_dir), "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------------------
# The real model


@pytest.mark.slow
def test_smollm2_on_mgsm_small(smollm2_dir, shared_data, tmp_path):
    from slam import tasks
    from slam.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(smollm2_dir)
    records = tasks.get("mgsm").load(str(shared_data / "mgsm"), langs=["en", "zh"], limit=4)
    report = evaluate.evaluate_model(model, tok, records, batch_size=8, max_new_tokens=96, progress=False)
    assert {k: v["total"] for k, v in report["per_lang"].items()} == {"en": 4, "zh": 4}
    # a real instruct model writes an answer with numbers in it, not noise
    assert sum(s["pred"] is not None for s in report["samples"]) >= 6
    evaluate.write_report(report, str(tmp_path / "eval"))
    assert (tmp_path / "eval" / "eval.png").stat().st_size > 1000
