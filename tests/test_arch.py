import pytest

from slam.arch import SUPPORTED, describe
from slam.errors import SlamError
from slam.freeze import make_plan
from slam.testing import TINY_ARCHS, tiny_model

# (model_type, expected FFN roles, tensor-name fragment that role "up" must select, fused?)
ARCH_TABLE = [
    ("llama", ("gate", "up", "down"), "mlp.up_proj", False),
    ("mistral", ("gate", "up", "down"), "mlp.up_proj", False),
    ("qwen2", ("gate", "up", "down"), "mlp.up_proj", False),
    ("qwen3", ("gate", "up", "down"), "mlp.up_proj", False),
    ("gemma", ("gate", "up", "down"), "mlp.up_proj", False),
    ("gemma2", ("gate", "up", "down"), "mlp.up_proj", False),
    ("gemma3_text", ("gate", "up", "down"), "mlp.up_proj", False),
    ("phi3", ("gate", "up", "down"), "mlp.gate_up_proj", True),
    ("gpt_neox", ("up", "down"), "mlp.dense_h_to_4h", False),
    ("gpt2", ("up", "down"), "mlp.c_fc", False),
    ("opt", ("up", "down"), ".fc1.", False),
    ("falcon", ("up", "down"), "mlp.dense_h_to_4h", False),
    ("bloom", ("up", "down"), "mlp.dense_h_to_4h", False),
]


def test_table_covers_every_tiny_arch():
    assert {row[0] for row in ARCH_TABLE} == set(TINY_ARCHS)
    assert set(TINY_ARCHS) <= set(SUPPORTED)


@pytest.mark.parametrize("model_type,roles,up_fragment,fused", ARCH_TABLE)
def test_adapter_finds_layers_and_ffn_roles(model_type, roles, up_fragment, fused):
    model = tiny_model(model_type, num_layers=12)
    arch = describe(model)
    assert arch.num_layers == 12
    assert arch.roles == roles
    assert arch.spec.fused_gate_up is fused
    plan = make_plan(model, [1], ["up"])
    assert plan.tensors and all(up_fragment in t.name for t in plan.tensors)
    # layer 1 must not match layers 10 and 11
    assert all(t.layer == 1 for t in plan.tensors)
    assert not any(".10." in t.name or ".11." in t.name for t in plan.tensors)
    for role in roles:
        assert arch.ffn_module(model, 3, role) is not None
    assert arch.act_module(model, 3) is not None
    assert arch.intermediate_size(model) == 64 or model_type in ("falcon", "bloom")  # 4*hidden there


@pytest.mark.parametrize("model_type", ["gpt2", "opt", "gpt_neox", "falcon", "bloom"])
def test_gate_role_on_ungated_ffn_is_a_clear_error(model_type):
    with pytest.raises(SlamError, match="role 'gate' does not exist"):
        make_plan(tiny_model(model_type), [0], ["gate"])


def test_phi3_plan_says_it_is_fused():
    plan = make_plan(tiny_model("phi3"), [0], ["up", "down"])
    assert any("fuse" in n for n in plan.notes)
    plan_both = make_plan(tiny_model("phi3"), [0], ["gate", "up"])
    assert len([t for t in plan_both.tensors if "gate_up_proj" in t.name]) == 1  # counted once


def test_unknown_architecture_lists_supported_and_how_to_add():
    from torch import nn

    class Fake(nn.Module):
        class config:  # noqa: N801
            model_type = "mamba"

    with pytest.raises(SlamError, match=r"unsupported architecture 'mamba'.*llama.*ArchSpec"):
        describe(Fake())
