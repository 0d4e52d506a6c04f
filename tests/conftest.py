"""Shared fixtures. Tests that need the authors' released results read them from
DERIVLIB_PAPER_RESULTS; when it is unset they are skipped with a reason that says so (pytest -ra
lists it), and under CI (where .ci/run sets it whenever ../shared/paper_results exists) a missing
directory is a failure, not a skip."""
from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from derivlib.readers import released as paper


def pytest_configure(config):
    # A shell without job control starts a background command with SIGINT ignored, and Python
    # keeps it so (children inherit it): the Ctrl-C tests need what a terminal gives, the
    # interpreter's own handler.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def paper_results_dir() -> Path:
    directory = paper.results_dir()
    if directory is None:
        message = f"needs the authors' released results: {paper.DOWNLOAD_HINT}"
        if os.environ.get(paper.ENV):
            pytest.fail(f"{paper.ENV}={os.environ[paper.ENV]} is not a directory; {message}")
        pytest.skip(message)
    return directory


@pytest.fixture(scope="session")
def flan_results(paper_results_dir) -> Path:
    return paper_results_dir / "flan-t5-large_results.json"


@pytest.fixture(scope="session")
def gpt4_results(paper_results_dir) -> Path:
    return paper_results_dir / "gpt-4_results.json"


@pytest.fixture
def isolated_data(tmp_path, monkeypatch) -> Path:
    """Run directories and figures under a temporary root."""
    monkeypatch.setenv("DERIVLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DERIVLIB_FIGURES", str(tmp_path / "figures"))
    return tmp_path


#: ChatML, as SmolLM2 writes it, without a default system message.
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
          "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory) -> Path:
    """A saved Llama-shaped causal LM with random weights (hidden size 32, 2 layers, 4 heads) and
    a small byte-level BPE tokenizer trained on LaTeX and the few-shot template, with a ChatML
    chat template, end token ``<|im_end|>`` and pad ``<|endoftext|>``."""
    import torch  # why: optional heavy dependency
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # why: optional heavy dependency
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # why: optional heavy dependency

    from derivlib import fewshot

    texts = [fewshot.ZERO_SHOT, fewshot.INTRO, fewshot.QUERY,
             r"\frac{d}{d x} f{(x)} = 2 x and f{(x)} = x^{2} and \int x d x = \frac{x^{2}}{2}",
             r"E_{n} = \frac{\hbar^{2} k^{2}}{2 m} and \psi{(x)} = \sin{(k x)} and \cos{(\theta)}",
             "Given, then derive, then obtain, Derivation: Prompt:"]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        clean_up_tokenization_spaces=False)
    tokenizer.chat_template = CHATML
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, initializer_range=0.2, bos_token_id=None,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny_causal_lm")
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture
def tiny_chat_lm(tiny_causal_lm, tmp_path) -> Path:
    """conftest's tiny random Llama with a ChatML template, whose own generation config samples:
    so an answer equal to greedy decoding shows that the server honoured the request's
    temperature 0. At least 4 new tokens, so that no answer is empty (``prompt`` asks an empty
    answer again)."""
    from transformers import GenerationConfig  # optional heavy dependency

    directory = shutil.copytree(tiny_causal_lm, tmp_path / "tiny-chat-lm")
    config = json.loads((directory / "config.json").read_text())
    GenerationConfig(do_sample=True, temperature=1.0, min_new_tokens=4, eos_token_id=config["eos_token_id"],
                     pad_token_id=config["pad_token_id"]).save_pretrained(directory)
    return directory
