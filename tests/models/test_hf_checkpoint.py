"""MODEL ``hf:DIR``: a local Hugging Face checkpoint (config.json + safetensors [+ tokenizer.json])."""
from __future__ import annotations

import pytest
import torch

from dlavm.models import load_model
from dlavm.models.builtin import CausalLMLogits
from dlavm.models.hf_checkpoint import CheckpointError, load_hf_checkpoint
from dlavm.tokenizer import Tokenizer, train_demo_tokenizer

MAX_POS = 64


def _llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    return LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2,
                                        max_position_embeddings=MAX_POS))


def _gpt2():  # lm_head tied to the embedding: save_pretrained stores it once
    from transformers import GPT2Config, GPT2LMHeadModel
    return GPT2LMHeadModel(GPT2Config(vocab_size=512, n_embd=64, n_layer=2, n_head=4, n_positions=MAX_POS,
                                      bos_token_id=0, eos_token_id=1))


def _qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=512, hidden_size=48, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=6, num_key_value_heads=2,
                                        max_position_embeddings=MAX_POS))


BUILDERS = {"llama": _llama, "gpt2": _gpt2, "qwen2": _qwen2}


def save_checkpoint(directory, arch: str, seed: int = 0):
    """A tiny random model of ``arch`` saved with safetensors, plus the demo tokenizer; returns the model."""
    torch.manual_seed(seed)
    model = BUILDERS[arch]().eval()
    model.save_pretrained(directory, safe_serialization=True)
    train_demo_tokenizer(512, path=directory)
    return model


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def checkpoint(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(f"hf-{request.param}")
    return directory, save_checkpoint(directory, request.param)


def test_logits_equal_the_saved_model(checkpoint):
    directory, original = checkpoint
    spec = load_model(f"hf:{directory}", max_seq=32)
    assert spec.dims == {"seq": (1, 32)}
    assert spec.extras["tokenizer"] == str((directory / "tokenizer.json").resolve())
    assert spec.extras["checkpoint"] == str(directory.resolve())
    tok = Tokenizer.from_file(spec.extras["tokenizer"])
    ids = torch.tensor([tok.encode("The compiler reads a model.", add_bos=True)])
    assert ids.shape[1] <= 32
    with torch.no_grad():
        expected = CausalLMLogits(original).eval()(ids)
        got = spec.module(ids)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        # the spec's own example inputs run too
        assert spec.module(*spec.example_inputs).shape[-1] == 512


def test_bound_defaults_to_max_position_embeddings(checkpoint):
    directory, _ = checkpoint
    assert load_hf_checkpoint(directory).dims == {"seq": (1, MAX_POS)}
    with pytest.raises(CheckpointError, match=rf"max_seq=1000 is larger than the model's "
                                              rf"max_position_embeddings={MAX_POS} \(config.json\)"):
        load_hf_checkpoint(directory, max_seq=1000)  # never clamped silently


def test_an_encoder_checkpoint_loads_as_an_encoder(tmp_path):
    """A BertModel checkpoint (``architectures: ["BertModel"]``) has no LM head: it loads with AutoModel
    as ``input_ids -> last_hidden_state``, its weights all used."""
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    original = BertModel(BertConfig(vocab_size=128, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64, max_position_embeddings=MAX_POS)).eval()
    original.save_pretrained(tmp_path, safe_serialization=True)
    spec = load_model(f"hf:{tmp_path}", max_seq=16)
    assert spec.dims == {"seq": (1, 16)} and spec.extras["kind"] == "encoder"
    ids = spec.inputs_at(seq=9)
    assert list(ids[0].shape) == [1, 9]
    with torch.no_grad():
        torch.testing.assert_close(spec.module(*ids), original(input_ids=ids[0]).last_hidden_state, rtol=0, atol=0)
    assert load_model(f"hf:{tmp_path}").dims == {"seq": (1, MAX_POS)}


def _rewrite_weights(directory, edit):
    from safetensors.torch import load_file, save_file
    path = directory / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def test_missing_tensor_is_named(tmp_path):
    save_checkpoint(tmp_path, "llama")
    _rewrite_weights(tmp_path, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensors: model\.layers\.1\.mlp\.up_proj\.weight"):
        load_model(f"hf:{tmp_path}")


def test_unexpected_tensor_is_named(tmp_path):
    save_checkpoint(tmp_path, "qwen2")
    _rewrite_weights(tmp_path, lambda t: t.update({"model.extra_head.weight": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"unexpected tensors: model\.extra_head\.weight"):
        load_hf_checkpoint(tmp_path)


def test_wrong_shape_is_refused(tmp_path):
    save_checkpoint(tmp_path, "llama")
    _rewrite_weights(tmp_path, lambda t: t.update({"model.norm.weight": torch.ones(65)}))
    with pytest.raises(CheckpointError, match=r"tensors of the wrong shape: model\.norm\.weight \(\[65\] in the checkpoint, \[64\] in the model\)"):
        load_hf_checkpoint(tmp_path)


def test_incomplete_directories_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint directory .*nothing' does not exist"):
        load_model(f"hf:{tmp_path / 'nothing'}")
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_hf_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        load_hf_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json cannot be read"):
        load_hf_checkpoint(tmp_path)


def test_cli_import_summary(tmp_path):
    from click.testing import CliRunner

    from dlavm.cli.main import main
    save_checkpoint(tmp_path, "llama")
    res = CliRunner().invoke(main, ["import", f"hf:{tmp_path}", "--summary", "--max-seq", "16"])
    assert res.exit_code == 0, res.output
    assert res.output.strip()
    res = CliRunner().invoke(main, ["import", f"hf:{tmp_path / 'missing'}", "--summary"])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_sharded_checkpoint(tmp_path):
    torch.manual_seed(1)
    original = _llama().eval()
    original.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file() and not (tmp_path / "model.safetensors").exists()
    spec = load_hf_checkpoint(tmp_path, max_seq=16)
    assert spec.extras["tokenizer"] is None
    ids = spec.make_inputs(seq=16)
    with torch.no_grad():
        torch.testing.assert_close(spec.module(*ids), CausalLMLogits(original)(*ids), rtol=0, atol=0)
