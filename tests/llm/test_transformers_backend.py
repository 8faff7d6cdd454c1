"""The `transformers` backend on a tiny random Llama built on the spot (no hub, no download)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agents.llm.config import BackendConfig
from agents.llm.factory import build_client
from agents.llm.types import ChatMessage, GenerationParams
from agents.llm.usage import UsageRecorder

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

WORDS = " ".join(
    (
        "the of to and in is it you that was for on are with as they be at one have this",
        "from or had by hot word but what some we can out other were all there when up use",
        "your how said each she which do their time if will way about many then them write",
        "would like so these her long",
    )
).split()


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tiny-llama")
    specials = ["<pad>", "<unk>", "<eos>", "user", "assistant", "system", ":"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(WORDS)))}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.decoder = tokenizers.decoders.WordPiece(prefix="##")
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.chat_template = (
        "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}assistant :{% endif %}"
    )
    fast.save_pretrained(d)
    cfg = transformers.LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
        eos_token_id=vocab["<eos>"], pad_token_id=0, bos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():
        for i in range(3):  # never predict pad/unk/eos: outputs run to max_tokens
            model.lm_head.weight[i].zero_()
            model.lm_head.weight[i] -= 10.0
    model.save_pretrained(d)
    return d


def config_for(path: Path) -> BackendConfig:
    return BackendConfig(
        backend="transformers", model=str(path), max_attempts=1,
        options={"device": "cpu", "dtype": "float32", "max_batch_size": 4},
    )  # fmt: skip


async def test_concurrent_calls_are_batched_and_greedy_is_deterministic(
    tiny_model_dir: Path,
) -> None:
    client = build_client("hf", config_for(tiny_model_dir), cache=None, usage=UsageRecorder())
    try:
        params = GenerationParams(max_tokens=5, temperature=0)
        msgs = [[ChatMessage(role="user", content=f"how many {w}")] for w in WORDS[:6]]
        first = await asyncio.gather(*(client.complete(m, params) for m in msgs))
        again = await asyncio.gather(*(client.complete(m, params) for m in msgs))
    finally:
        await client.aclose()
    assert [c.text for c in first] == [c.text for c in again]
    for c in first:
        assert c.text
        assert c.completion_tokens == 5
        assert c.finish_reason == "length"
        assert c.prompt_tokens > 0


async def test_prompt_past_the_window_is_context_too_long(tiny_model_dir: Path) -> None:
    from agents.llm.errors import ContextTooLongError

    client = build_client("hf", config_for(tiny_model_dir), cache=None, usage=UsageRecorder())
    try:
        with pytest.raises(ContextTooLongError):
            await client.complete(
                [ChatMessage(role="user", content=" ".join(WORDS))],
                GenerationParams(max_tokens=32, temperature=0),
            )
    finally:
        await client.aclose()
