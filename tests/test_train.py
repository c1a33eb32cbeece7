"""The training loop without Ray: freezing holds, exact resume after an injected failure, baselines, CLI."""

import json

import pytest
import torch

from slam.config import load_config, to_dict
from slam.errors import SlamError
from slam.testing import save_tiny
from slam.train import InjectedFault, train_local, train_loop
from slam.train.batches import cosine_lambda, micro_batches

LANGS = ["en", "de", "fr"]


def make_dataset(root, n_problems: int = 24):
    """A small built dataset (shared interface §2): cot rows in 3 languages + X->en translate rows."""
    root.mkdir(parents=True, exist_ok=True)
    words = {"en": "has", "de": "hat", "fr": "a"}
    rows = []
    for i in range(n_problems):
        en_q = f"Tom has {i} apples and buys 2 more. How many apples?"
        for lang in LANGS:
            q = en_q if lang == "en" else f"[{lang}] Tom {words[lang]} {i} pommes + 2?"
            rows.append({"id": f"p{i}-{lang}-cot", "problem_id": f"p{i}", "lang": lang, "task": "cot",
                         "instruction": q, "response": f"Tom has {i} apples. {i} + 2 = {i + 2}. The answer is {i + 2}.",
                         "gold": i + 2})
            if lang != "en":
                rows.append({"id": f"p{i}-{lang}-tr", "problem_id": f"p{i}", "lang": lang, "task": "translate",
                             "instruction": f"Translate the following sentences to English.\n{q}", "response": en_q,
                             "gold": None})
    val = [r for r in rows if r["problem_id"] in {"p0", "p1"}]
    train = [r for r in rows if r not in val]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (root / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in val))
    return root, [r["instruction"] + " " + r["response"] for r in rows]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    data, texts = make_dataset(root / "data")
    model = save_tiny(root / "model", "llama", num_layers=4, texts=texts)
    return model, data


def cfg_for(world, *overrides):
    model, data = world
    return load_config(None, [f"model.path={model}", f"data.train={data}", "train.layers=[1,2]", "train.max_steps=6",
                              "train.lr=1e-2", "train.micro_batch_size=4", "train.engine=torch",
                              "train.checkpoint_every=2", *overrides])


def state_dict(path):
    from slam.models import load_model

    return {n: p.detach().clone() for n, p in load_model(path, device="cpu").named_parameters()}


def test_slam_trains_only_the_plan_and_everything_else_is_bit_identical(world, tmp_path):
    from slam.delta import load_model_with_delta

    out = train_loop({"cfg": to_dict(cfg_for(world)), "run_dir": str(tmp_path / "run")})
    assert out["step"] == 6 and out["trainable_fraction"] < 0.5
    model, _ = load_model_with_delta(world[0], out["delta_uri"], device="cpu")
    base = state_dict(world[0])
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, base[n])}
    assert changed == {f"model.layers.{i}.mlp.{r}_proj.weight" for i in (1, 2) for r in ("up", "down")}


@pytest.mark.parametrize("engine,precision", [("torch", "fp32"), ("deepspeed", "fp32"), ("deepspeed", "bf16")])
def test_resume_after_injected_failure_is_exact(world, tmp_path, monkeypatch, engine, precision):
    """Kill at step 5 (last checkpoint: 4), re-run: same losses as an uninterrupted run, no step twice.

    deepspeed+bf16 is the GPU precision path (bf16 module, fp32 master weights in the ZeRO-2 optimizer)
    run on DeepSpeed's CPU accelerator: the same code, minus CUDA kernels.
    """
    cfg = to_dict(cfg_for(world, f"train.engine={engine}", "train.grad_accum=2", f"train.precision={precision}"))
    clean = train_loop({"cfg": cfg, "run_dir": str(tmp_path / "clean")})
    monkeypatch.setenv("SLAM_FAIL_AT_STEP", "5")
    with pytest.raises(InjectedFault):
        train_loop({"cfg": cfg, "run_dir": str(tmp_path / "killed")})
    resumed = train_loop({"cfg": cfg, "run_dir": str(tmp_path / "killed")})
    assert resumed["resumed_from_step"] == 4 and resumed["attempts"] == 2
    hist = [json.loads((tmp_path / r / "checkpoints" / "step-0000006" / "trainer_state.json").read_text())["history"]
            for r in ("clean", "killed")]
    assert [h["step"] for h in hist[1]] == [1, 2, 3, 4, 5, 6]
    curves = [[(h["step"], h["train_loss"]) for h in hs] for hs in hist]
    assert curves[1] == curves[0]  # the loss curve continues exactly where it left off
    assert resumed["val_loss"] == pytest.approx(clean["val_loss"], rel=1e-6)
    assert (tmp_path / "killed" / "faults" / "step-5").is_file()
    from slam.delta import read_manifest

    assert read_manifest(resumed["delta_uri"])["dtype"] == {"fp32": "float32", "bf16": "bfloat16"}[precision]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_run_keeps_only_its_two_newest_checkpoints(world, tmp_path, where, request):
    """As the Ray path (num_to_keep=2): checkpoints at steps 2, 4, 6 leave 4 and 6, and resume still works."""
    from slam import storage

    root = request.getfixturevalue("s3_bucket") + "/run" if where == "s3" else str(tmp_path / "run")
    ckpts = storage.join(root, "checkpoints")
    train_loop({"cfg": to_dict(cfg_for(world)), "run_dir": root})
    if where == "s3":
        names = {rel.split("/")[0] for rel, _ in storage.list_objects(ckpts)}
    else:
        names = {p.name for p in (tmp_path / "run" / "checkpoints").iterdir()}
    assert names == {"latest.json", "step-0000004", "step-0000006"}
    assert storage.read_json(storage.join(ckpts, "latest.json"))["step"] == 6
    again = train_loop({"cfg": to_dict(cfg_for(world)), "run_dir": root})  # finished: resumes at the end
    assert again["step"] == 6


def test_removing_a_checkpoint_refuses_a_directory_slam_did_not_publish(tmp_path):
    from slam import storage

    mine = tmp_path / "user-files"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(SlamError, match="not a finished slam output"):
        storage.remove_dir(mine)
    assert (mine / "notes.txt").read_text() == "keep me"
    trash = tmp_path / ".step-0000002.slam-trash-0123abcd"  # what a crash in the middle of a removal leaves
    (trash / "weights").mkdir(parents=True)
    storage.remove_dir(tmp_path / "gone")  # already gone: nothing to do, but the crash's leftovers are cleared
    assert not trash.exists() and mine.is_dir()


def test_full_method_trains_every_tensor(world, tmp_path):
    from slam.delta import read_manifest

    out = train_loop({"cfg": to_dict(cfg_for(world, "train.method=full", "train.max_steps=2",
                                               "train.checkpoint_every=0", "train.lr=1e-3")),
                      "run_dir": str(tmp_path / "run")})
    m = read_manifest(out["delta_uri"])
    assert out["trainable_fraction"] == 1.0 and m["trainable"] == m["total"] and m["method"] == "full"


def test_two_stage_runs_translate_then_english_cot(world, tmp_path):
    from slam.delta import load_delta

    out = train_local(cfg_for(world, "train.method=two-stage", "train.max_steps=2", "train.checkpoint_every=0",
                              "train.lr=1e-3"), str(tmp_path))
    assert out["run_name"].endswith("-stage2")
    s1 = [d for d in tmp_path.iterdir() if d.name.endswith("-stage1")][0]
    t1, m1 = load_delta(str(s1 / "delta"))
    t2, m2 = load_delta(out["delta_uri"])
    assert (m1["stage"], m2["stage"]) == ("stage1", "stage2")
    base = state_dict(world[0])
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(t1[name], base[name]) and not torch.equal(t2[name], t1[name])


@pytest.mark.parametrize("val_tasks,stage2_langs", [("[]", {"en"}), ("[cot]", {"en", "de", "fr"})])
def test_validation_on_the_target_is_the_same_measurement_in_every_stage(world, tmp_path, val_tasks, stage2_langs):
    """val_tasks=[cot]: stage 1 (translate) and stage 2 (English CoT) validate on multilingual CoT rows."""
    out = train_local(cfg_for(world, "train.method=two-stage", "train.max_steps=4", "train.checkpoint_every=0",
                              "train.lr=1e-3", f"train.val_tasks={val_tasks}", "train.val_every=1",
                              "train.val_accuracy_limit=1", "train.val_accuracy_every=2",
                              "train.val_max_examples=64"), str(tmp_path))
    states = {}
    for stage in ("stage1", "stage2"):
        run = next(d for d in tmp_path.iterdir() if d.name.endswith(stage))
        states[stage] = json.loads((run / "checkpoints" / "step-0000004" / "trainer_state.json").read_text())["val"]
    s2 = states["stage2"]
    assert [v["step"] for v in s2] == [1, 2, 3, 4]
    assert [("val_accuracy" in v) for v in s2] == [False, True, False, True]
    assert all(a["train_time"] <= b["train_time"] for a, b in zip(s2, s2[1:], strict=False))
    per_lang = {k.removeprefix("val_accuracy_") for k in s2[-1] if k.startswith("val_accuracy_")} - {"non_en"}
    assert per_lang == stage2_langs
    # the non-English average (what Tune ranks by) exists exactly when a non-English language is scored
    assert ("val_accuracy_non_en" in s2[-1]) == bool(stage2_langs - {"en"})
    assert out["val_loss"] == s2[-1]["val_loss"]
    # stage 1 trains on translation; with the target as validation it is scored on CoT answers too
    assert ("val_accuracy" in states["stage1"][-1]) == (val_tasks == "[cot]")


def test_too_long_rows_are_quarantined_and_counted(world, tmp_path):
    out = train_loop({"cfg": to_dict(cfg_for(world, "data.max_length=240", "train.max_steps=1",
                                               "train.checkpoint_every=0")), "run_dir": str(tmp_path / "r")})
    assert out["quarantined"] > 0
    with pytest.raises(SlamError, match="no training examples.*quarantined"):
        train_loop({"cfg": to_dict(cfg_for(world, "data.max_length=5")), "run_dir": str(tmp_path / "r2")})


def test_layers_come_from_the_probe_report(world, tmp_path):
    from slam.delta import read_manifest
    from slam.train import resolve_layers

    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"selected_layers": [0, 3], "scores": [0.9, 0.1, 0.2, 0.8], "ranking": [0, 3, 2, 1],
                                 "top_k": 2, "selection": "top-k"}))
    cfg = cfg_for(world, "train.layers=null", f"train.probe={probe}", "train.max_steps=1", "train.checkpoint_every=0")
    assert resolve_layers(cfg).train.layers == [0, 3]
    assert resolve_layers(cfg.replace(train={"top_k": 1})).train.layers == [0]  # re-selected from the scores
    out = train_local(cfg, str(tmp_path / "r"))
    assert read_manifest(out["delta_uri"])["layers"] == [0, 3]
    # the decision is made once, before workers start: a worker never re-reads the probe
    with pytest.raises(SlamError, match="train.layers is not set"):
        train_loop({"cfg": to_dict(cfg), "run_dir": str(tmp_path / "w")})


def test_missing_inputs_are_reported_together(tmp_path):
    from slam.train import check_inputs

    cfg = load_config(None, [f"model.path={tmp_path}/nope", f"data.train={tmp_path}/nodata"])
    with pytest.raises(SlamError) as e:
        check_inputs(cfg)
    msg = str(e.value)
    assert "model.path" in msg and "train.jsonl" in msg and "train.layers" in msg


@pytest.mark.parametrize("micro,accum,world_size", [(2, 1, 1), (2, 2, 2), (3, 1, 2), (1, 4, 3)])
def test_batch_schedule_covers_each_example_once_per_epoch(micro, accum, world_size):
    n, g = 48, micro * accum * world_size
    seen = []
    for step in range(1, n // g + 1):
        for rank in range(world_size):
            for mb in micro_batches(n, step, seed=7, micro=micro, accum=accum, rank=rank, world=world_size):
                assert len(mb) == micro
                seen.extend(mb)
    assert len(seen) == len(set(seen)) == (n // g) * g
    assert micro_batches(n, 3, seed=7, micro=micro, accum=accum, rank=0, world=world_size) == \
        micro_batches(n, 3, seed=7, micro=micro, accum=accum, rank=0, world=world_size)


@pytest.mark.parametrize("micro,accum,world_size,n", [(4, 1, 1, 56), (2, 2, 2, 48), (3, 1, 2, 50), (4, 1, 1, 700)])
def test_length_grouped_schedule_covers_each_example_once_and_cuts_padding(micro, accum, world_size, n):
    gen = torch.Generator().manual_seed(3)
    lengths = (torch.randint(40, 300, (n,), generator=gen)).tolist()
    g = micro * accum * world_size
    kw = dict(seed=7, micro=micro, accum=accum, world=world_size)

    def epoch(lens):
        out = []
        for step in range(1, n // g + 1):
            for rank in range(world_size):
                out.extend(micro_batches(n, step, rank=rank, lengths=lens, **kw))
        return out

    grouped, plain = epoch(lengths), epoch(None)
    seen = [i for mb in grouped for i in mb]
    assert all(len(mb) == micro for mb in grouped)
    assert len(seen) == len(set(seen)) == (n // g) * g          # each example at most once per epoch
    assert micro_batches(n, 2, rank=0, lengths=list(lengths), **kw) == micro_batches(n, 2, rank=0, lengths=lengths, **kw)

    def padded(mbs):  # tokens computed = rows x the longest row of their micro-batch
        return sum(len(mb) * max(lengths[i] for i in mb) for mb in mbs)

    real = sum(lengths[i] for i in seen)
    assert padded(grouped) - real < 0.25 * (padded(plain) - sum(lengths[i] for mb in plain for i in mb))
    # not simply sorted: the micro-batches of an epoch come in a seeded random order of lengths
    firsts = [lengths[mb[0]] for mb in grouped]
    assert firsts != sorted(firsts) and firsts != sorted(firsts, reverse=True)


@pytest.mark.parametrize("total,warmup,min_ratio,checks", [
    (10, 0.0, 0.0, {0: 1.0, 10: 0.0}),
    (10, 0.2, 0.1, {0: 1 / 3, 1: 2 / 3, 2: 1.0, 10: 0.1}),
    (100, 0.0, 0.0, {50: 0.5}),
])
def test_cosine_schedule(total, warmup, min_ratio, checks):
    f = cosine_lambda(total, warmup, min_ratio)
    for i, want in checks.items():
        assert f(i) == pytest.approx(want, abs=1e-6)


def test_cli_train_no_ray_prints_the_delta(world, tmp_path, capsys):
    from slam.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {{path: {world[0]}}}\ndata: {{train: {world[1]}}}\n"
                   "train: {layers: [0], max_steps: 1, engine: torch}\n")
    assert main(["train", "--config", str(cfg), "--no-ray", "--storage", str(tmp_path / "runs"),
                 "train.lr=1e-4"]) == 0
    delta_uri = capsys.readouterr().out.strip().splitlines()[-1]
    assert (tmp_path / "runs").as_posix() in delta_uri and delta_uri.endswith("delta")
    assert main(["train", "--config", str(cfg), "--no-ray", "train.layers=[99]"]) == 2
    assert "out of range" in capsys.readouterr().err


@pytest.mark.parametrize("preset,stage,bf16", [("zero2-bf16", 2, True), ("zero2-cpu", 2, False)])
def test_deepspeed_presets_merge_over_the_generated_config(preset, stage, bf16):
    from pathlib import Path

    from slam.config import TrainConfig
    from slam.train.engines import deepspeed_config

    path = Path(__file__).resolve().parents[1] / "configs" / "deepspeed" / f"{preset}.json"
    ds = deepspeed_config(TrainConfig(micro_batch_size=8, grad_accum=4), world=2, precision="fp32",
                          overrides_uri=str(path))
    assert ds["train_batch_size"] == 64 and ds["train_micro_batch_size_per_gpu"] == 8
    assert ds["zero_optimization"]["stage"] == stage and ds["bf16"]["enabled"] is bf16
    assert not any(k.startswith("_") for k in ds)


@pytest.mark.parametrize("name", ["smollm2-demo", "metamath-7b", "metamath-13b"])
def test_presets_load(name):
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    assert cfg.train.method == "slam" and cfg.train.roles == ["up", "down"]
    if name.startswith("metamath"):
        t = cfg.train
        assert t.layers == [0, 1, 2, 3, 4, 5] and t.lr == 2e-5 and t.warmup_ratio == 0 and t.epochs == 4
        assert t.micro_batch_size * t.grad_accum * t.num_workers == 512 and cfg.data.max_length == 1024
        assert t.zero_stage == 2 and t.precision == "bf16"


def _loss_batch(vocab: int, length: int = 1100) -> dict:
    """Two rows, different prompt lengths and padding: > 2 chunks of response tokens in all."""
    torch.manual_seed(0)
    ids = torch.randint(3, vocab, (2, length))
    labels, mask = ids.clone(), torch.ones_like(ids)
    labels[0, :40], labels[1, :300] = -100, -100
    labels[1, 900:], mask[1, 900:] = -100, 0
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma", "phi3", "gpt_neox", "gpt2", "opt", "falcon", "bloom"])
def test_chunked_response_loss_equals_the_models_own_loss_and_gradients(arch):
    from slam.testing import tiny_model
    from slam.train.loss import causal_lm_loss, chunked_loss_unsupported

    model = tiny_model(arch, num_layers=2, **({"max_position_embeddings": 2048} if arch in ("gpt2", "opt") else {}))
    assert chunked_loss_unsupported(model) is None
    batch = _loss_batch(model.config.vocab_size)
    grads = []
    for chunked in (False, True):
        model.zero_grad()
        loss = causal_lm_loss(model, model, batch, chunked)
        loss.backward()
        grads.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (ref, g_ref), (got, g_got) = grads
    assert got == pytest.approx(ref, rel=1e-5)
    assert g_got.keys() == g_ref.keys()
    for n in g_ref:
        torch.testing.assert_close(g_got[n], g_ref[n], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("overrides,reason", [({"final_logit_softcapping": 30.0}, "final_logit_softcapping=30.0")])
def test_chunked_loss_refuses_models_that_post_process_logits(overrides, reason):
    from slam.testing import tiny_model
    from slam.train.loss import chunked_loss_unsupported, pick_chunked_loss

    model = tiny_model("gemma2", num_layers=2, **overrides)
    assert reason in chunked_loss_unsupported(model)
    assert pick_chunked_loss(model, _loss_batch(model.config.vocab_size, 64), "fp32") is False
    plain = tiny_model("gemma2", num_layers=2, final_logit_softcapping=None)
    assert pick_chunked_loss(plain, _loss_batch(plain.config.vocab_size, 64), "fp32") is True


def test_training_reads_the_real_data_build_with_unicode_line_separators(shared_data, tmp_path):
    """Regression: `slam data build` on the shared GSM8K + QAlign data writes questions holding U+2028;
    the training reader split lines with str.splitlines() and failed ("train.jsonl line 1321: not valid
    JSON"), so training on real data had never run. One JSONL reader (split on \\n only) for both now."""
    from slam.cli import main
    from slam.data.build import read_examples

    data = tmp_path / "real"
    assert main(["data", "build", "--out", str(data), "--shared-data", str(shared_data), "--langs", "de"]) == 0
    rows = read_examples(str(data), "train")
    assert any("\u2028" in r["instruction"] or "\u2028" in r["response"] for r in rows)
    model = save_tiny(tmp_path / "model", "llama", num_layers=2,
                      texts=[r["instruction"] + " " + r["response"] for r in rows[:200]])
    cfg = load_config(None, [f"model.path={model}", f"data.train={data}", "train.layers=[1]", "train.max_steps=2",
                             "train.engine=torch", "train.micro_batch_size=2", "train.val_max_examples=4",
                             "data.max_length=4096"])
    out = train_local(cfg, str(tmp_path / "runs"))
    assert out["step"] == 2 and out["train_loss"] > 0 and out["delta_uri"].endswith("delta")


def test_validation_accuracy_scores_the_answer_sentence_not_what_follows_it():
    """Tune ranks trials by validation accuracy: a row that says "The answer is 8." and rambles on to another
    number must score its answer (8), not the last number of the ramble (the stop pattern ends the row)."""
    from slam.prompts import format_prompt
    from slam.testing import tiny_model, tiny_tokenizer
    from slam.train.loop import _val_accuracy

    q = "Tom has 3 pens and gets 5 more. How many pens?"
    text = format_prompt(None, q) + " The answer is 8. The answer is 9."
    tok = tiny_tokenizer([text] * 4)
    model = tiny_model("llama", num_layers=2, vocab_size=max(len(tok), 256), hidden_size=64, intermediate_size=128)
    model.generation_config.pad_token_id = tok.pad_token_id
    ids = torch.cat([tok(text, return_tensors="pt").input_ids, torch.tensor([[tok.eos_token_id]])], dim=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):  # memorize the one completion, ramble included
        opt.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
    row = {"id": "p0-de", "lang": "de", "task": "cot", "instruction": q, "response": "The answer is 8.", "gold": 8}
    from slam.generation import generate

    assert generate(model.eval(), tok, [q], max_new_tokens=80)[0][0].strip().endswith("The answer is 9.")  # control
    out = _val_accuracy(model, tok, [row, {**row, "id": "p0-en", "lang": "en", "gold": 9}], limit=4, template="alpaca")
    assert (out["val_accuracy_de"], out["val_accuracy_en"]) == (1.0, 0.0)


def test_validation_answer_budget_follows_the_longest_reference_answer():
    from slam.testing import tiny_tokenizer
    from slam.train.loop import answer_budget

    tok = tiny_tokenizer(["word The answer is 8."] * 4)
    n = lambda t: len(tok(t, add_special_tokens=False)["input_ids"])  # noqa: E731
    short, longer = "The answer is 8.", "word word word The answer is 8."
    assert answer_budget(tok, [short]) == int(1.25 * n(short)) + 16 < 160
    assert answer_budget(tok, [short, longer, short]) == int(1.25 * n(longer)) + 16 > answer_budget(tok, [short])
    assert answer_budget(tok, [short, "word " * 400]) == 160 and answer_budget(tok, []) == 160   # never above the cap
