"""Tokenizers for T5 on LaTeX derivations.

* :func:`train_latex_tokenizer`: a byte-level BPE trained with HF ``tokenizers`` on the training
  text, behind a pre-tokenizer that cuts LaTeX into pieces first: a multi-character unit
  (``\\frac``, a word) alone, and runs of single-character units (``{``, ``^``, ``_``, a digit,
  a letter) together. BPE merges may then join whole units (``}{``, ``{(x)}``, ``^{2}``), which
  halves the token count of a derivation, but never glue part of a command to a neighbour.
  Byte-level means every input, including the out-of-vocabulary Greek letters of the VR set, is
  encodable and decodes back exactly.
* :func:`add_missing_characters`: pretrained T5 SentencePiece vocabularies cannot encode ``{``,
  ``}``, ``\\`` and others (PAPER.md §4). The characters a vocabulary cannot round-trip are found
  on the training text, added as tokens, and the pre-tokenizer set so that text after an added
  token gets no extra word-boundary marker; the training text then round-trips exactly (the
  authors' outputs read ``\\ frac { d }`` because theirs did not).
"""
from __future__ import annotations

from typing import Iterable, Sequence

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
#: The pieces BPE may merge within, each with the space before it. A multi-character LaTeX unit
#: (a command such as ``\\frac``, an escaped character, a word) stands alone, so no merge can glue
#: part of it to a neighbour; a run of single-character units (one letter, a digit, a brace,
#: ``^``, ``_``, ``(``, ``=``...) is one piece, so BPE can learn whole-unit merges such as ``}{``,
#: ``{(x)}`` or ``^{2}`` that roughly halve sequence lengths; anything else (non-ASCII) stands alone.
LATEX_PIECE = (r" ?\\[A-Za-z]+| ?\\[^A-Za-z\s]| ?[A-Za-z]{2,}"
               r"| ?(?:[A-Za-z](?![A-Za-z])|[!-@\[\]^_`{-~])+| ?\S|\s+")


def train_latex_tokenizer(texts: Iterable[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """A T5-compatible tokenizer (pad 0, eos 1, unk 2; eos appended) trained on ``texts``."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LATEX_PIECE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS, UNK],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, tokenizer.token_to_id(EOS))])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, eos_token=EOS,
                                   unk_token=UNK, clean_up_tokenization_spaces=False)


def round_trips(tokenizer, text: str) -> bool:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) == text


def unencodable_characters(tokenizer, texts: Iterable[str]) -> list[str]:
    """The non-space characters of ``texts`` that ``tokenizer`` cannot encode and decode back."""
    characters = sorted({c for text in texts for c in text if not c.isspace()})
    return [c for c in characters if not round_trips(tokenizer, c)]


def add_missing_characters(tokenizer, texts: Sequence[str]) -> tuple[PreTrainedTokenizerFast, list[str]]:
    """``tokenizer`` extended with every character of ``texts`` it cannot round-trip.

    Returns the new tokenizer (a plain fast tokenizer over the same vocabulary plus the added
    characters) and the characters added; the caller resizes the model's embeddings. Raises if
    some text still does not round-trip (e.g. a normalizer that rewrites characters).
    """
    missing = unencodable_characters(tokenizer, texts)
    backend = tokenizer.backend_tokenizer
    if missing:
        backend.add_tokens([AddedToken(c, normalized=False, lstrip=False, rstrip=False) for c in missing])
        # SentencePiece marks a word start with "▁"; prepending it to every segment after an added
        # token ("always") would decode "\frac" as "\ frac". "first" marks only the text's start.
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    extended = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=tokenizer.pad_token or PAD,
        eos_token=tokenizer.eos_token or EOS, unk_token=tokenizer.unk_token or UNK,
        clean_up_tokenization_spaces=False)
    broken = [t for t in texts if not round_trips(extended, t)]
    if broken:
        raise ValueError(f"{len(broken)} training texts do not round-trip through the tokenizer even "
                         f"after adding {missing}; first: {broken[0]!r:.200}")
    return extended, missing
