"""Tokenizers for T5 on LaTeX derivations.

* :func:`train_latex_tokenizer`: a byte-level BPE trained with HF ``tokenizers`` on the training
  text, behind a pre-tokenizer that cuts LaTeX into pieces first, and BPE merges only within a
  piece: a command (``\\frac``), an identifier with its simple subscript (``p_{x}``, ``E_{n}``,
  ``dt``), a command's subscript (the ``_{nl}`` of ``\\Psi_{nl}``), one of four bracket pairs
  (``{(``, ``)}``, ``}{``, ``^{``), any other character alone. So an identifier is always cut
  the same way wherever it stands, and the model copies a symbol from the prompt as the same
  tokens; an earlier version that let BPE merge across units (``_{x},``, ``y)}``) was 20%
  shorter but cut ``p_{x}`` three different ways in one derivation, and its smoke model did not
  learn to copy. Byte-level means every input, including the out-of-vocabulary Greek letters of
  the VR set, is encodable and decodes back exactly.
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
#: The pieces BPE may merge within, each with the space before it: a command; an identifier or
#: number with an optional simple subscript; a command's subscript; one of the bracket pairs the
#: printer always writes together (``{(`` and ``)}`` around a function's arguments, ``}{``
#: between a fraction's parts, ``^{``); any other character alone; whitespace. Brackets are
#: never merged into longer runs: with runs (``)})}}{`` one token, 132 such tokens in a
#: 1000-token vocabulary) closing k levels meant choosing among rare tokens, and a quarter of
#: the smoke model's equations came out unbalanced.
LATEX_PIECE = (r" ?\\[A-Za-z]+| ?[A-Za-z0-9]+(?:_\{[A-Za-z0-9]+\})?| ?_\{[A-Za-z0-9]+\}"
               r"| ?(?:\{\(|\)\}|\}\{|\^\{)| ?\S|\s+")


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
