"""The pretrained path, offline: a tiny T5 with a SentencePiece vocabulary that lacks braces and
backslashes, built and saved here, gets the missing characters added, round-trips the training
text exactly, and fine-tunes through the same code as the from-scratch model."""
from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from derivlib.base.params import validate
from derivlib.models import t5, tokenization
from derivlib.readers.runs import load_set
from test_t5 import make_sets_dir, synthetic_item  # the same synthetic items and sets as the main tests

# The tests below train: passive OpenMP waiting must be chosen before torch loads (see the function)
t5.prefer_passive_threads()

PLAIN_WORDS = ["given", "then", "derive", "obtain", "and", "eta", "frac", "theta", "mathbf", "d", "x",
               "t", "a", "E", "n", "psi", "phi", "f", "e"]


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory) -> Path:
    """A saved tiny T5 whose SentencePiece vocabulary never saw { } \\ ^ _ ( ) = ,"""
    import sentencepiece as spm  # why: optional heavy dependency, only to build the test model
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer  # why: as above, after the thread policy

    rng = random.Random(0)
    corpus = [" ".join(rng.choice(PLAIN_WORDS) for _ in range(12)) + f" {rng.randint(0, 9)}"
              for _ in range(300)]
    assert not any(c in text for text in corpus for c in "{}\\^_()=,")
    directory = tmp_path_factory.mktemp("tiny-t5")
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=buffer, vocab_size=40,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   character_coverage=1.0, num_threads=1, minloglevel=2)
    (directory / "spiece.model").write_bytes(buffer.getvalue())
    tokenizer = T5Tokenizer.from_pretrained(directory, extra_ids=0)
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=16, num_layers=1, num_decoder_layers=1,
        num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_missing_characters_are_added_and_text_round_trips(pretrained_dir):
    from transformers import AutoTokenizer  # why: optional heavy dependency, loaded after the thread policy

    rng = random.Random(1)
    items = [synthetic_item(rng, i) for i in range(30)]
    texts = [text for it in items for text in (it["prompt"], it["derivation"])]
    original = AutoTokenizer.from_pretrained(pretrained_dir, local_files_only=True)
    assert not all(tokenization.round_trips(original, t) for t in texts)
    missing = tokenization.unencodable_characters(original, texts)
    assert set("{}\\^_()=") <= set(missing)
    extended, added = tokenization.add_missing_characters(original, texts)
    assert added == missing
    assert all(tokenization.round_trips(extended, t) for t in texts)
    # no spaces appear around the added characters (the authors' "\ frac { d }" outputs)
    ids = extended(r"\frac{d}{d x} \eta{(x)}")["input_ids"]
    assert extended.decode(ids, skip_special_tokens=True) == r"\frac{d}{d x} \eta{(x)}"
    assert ids[-1] == extended.eos_token_id


def test_pretrained_model_fine_tunes_with_resized_embeddings(pretrained_dir, tmp_path):
    sets_dir = make_sets_dir(tmp_path, n_train=16, n_dev=2, n_test=2)
    config = validate(t5.TrainConfig, {
        "model": str(pretrained_dir), "epochs": 1, "batch_size": 8, "max_dev_items": 2, "log_every": 1,
        "learning_rate": 1e-3, "sub_derivations": False})  # the synthetic items carry no steps to cut
    result = t5.train(load_set(sets_dir, "train"), load_set(sets_dir, "dev"), tmp_path / "model-run", config,
                      log=lambda line: None)
    assert set("{}\\^_") <= set(result.summary["added_characters"])
    assert result.summary["model"] == pretrained_dir.name
    model, tokenizer = t5.load_model(result.model_dir)
    assert model.get_input_embeddings().num_embeddings >= len(tokenizer) > 40
    text = load_set(sets_dir, "train")[0]["derivation"]
    assert tokenization.round_trips(tokenizer, text)  # the saved tokenizer keeps the additions
