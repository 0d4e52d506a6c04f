"""Syntax-constrained decoding (derivlib.models.syntax): which tokens the constraint allows after a
prefix, and what an untrained T5 writes with and without it."""
from __future__ import annotations

import pytest

from derivlib.models import syntax, t5, tokenization

TEXTS = [r"f{(x)} = x^{2} and \frac{d}{d x} f{(x)} = 2 x",
         r"\int \eta{(t)} dt = \int (t + 1) dt and \eta{(t)} = \sin{(t)}",
         r"g{(a,b)} = [a] + \left(b\right) and \sqrt{a} = \frac{a}{b}"]


@pytest.fixture(scope="module")
def tokenizer():
    return tokenization.train_latex_tokenizer(TEXTS * 3, vocab_size=400)


def ids_of(tokenizer, text: str) -> tuple[int, ...]:
    """The decoder's view of a prefix: the start token, then the text's tokens (no end token)."""
    return (tokenizer.pad_token_id, *tokenizer(text, add_special_tokens=False).input_ids)


def token(tokenizer, text: str) -> int:
    (only,) = tokenizer(text, add_special_tokens=False).input_ids
    return only


def test_allowed_tokens_follow_the_open_brackets_and_the_equals_sign(tokenizer):
    constraint = syntax.BalancedBrackets(tokenizer)
    close_brace, close_paren = token(tokenizer, "}"), token(tokenizer, ")")
    end, separator, equals = tokenizer.eos_token_id, token(tokenizer, " and"), token(tokenizer, " =")

    allowed = set(map(int, constraint.allowed(constraint.state(ids_of(tokenizer, r"y = \frac{x")))))
    assert close_brace in allowed and close_paren not in allowed
    assert end not in allowed and separator not in allowed  # a brace is open

    allowed = set(map(int, constraint.allowed(constraint.state(ids_of(tokenizer, r"y = \sin{(x")))))
    assert close_paren in allowed and close_brace not in allowed  # the innermost bracket closes first

    allowed = set(map(int, constraint.allowed(constraint.state(ids_of(tokenizer, r"f{(x)}")))))
    assert equals in allowed and end not in allowed and separator not in allowed  # no "=" yet

    allowed = set(map(int, constraint.allowed(constraint.state(ids_of(tokenizer, r"f{(x)} = x^{2}")))))
    assert end in allowed and separator in allowed and equals not in allowed
    assert close_brace not in allowed and close_paren not in allowed

    # after " and" a new equation starts: no "=" yet
    allowed = set(map(int, constraint.allowed(constraint.state(ids_of(tokenizer, r"f{(x)} = x^{2} and g")))))
    assert equals in allowed and end not in allowed


def test_state_is_the_same_incrementally_and_from_scratch(tokenizer):
    text = r"\int \eta{(t)} dt = \int (t + 1) dt and \eta{(t"
    prefix = ids_of(tokenizer, text)
    stepwise = syntax.BalancedBrackets(tokenizer)
    for length in range(1, len(prefix) + 1):  # one step at a time, as generate calls it
        state = stepwise.state(prefix[:length])
    assert state == syntax.BalancedBrackets(tokenizer).state(prefix) == ("{(", 0)


def test_escaped_braces_are_literal():
    assert syntax.token_events(r"\{x\}") == ""
    assert syntax.token_events(r"\frac{a}{b} = (c)") == "{}{}=()"
    assert syntax.apply_events(syntax.START, "{(}") is None
    assert syntax.apply_events(syntax.START, "{}=") == ("", 1)
    assert syntax.apply_events(("", 1), "=") is None


def test_valid_prefix_allows_open_brackets_but_not_wrong_closings():
    assert syntax.valid_prefix(r"f{(x)} = x^{2} and \frac{d}{d x")  # cut by max_new_tokens: still valid
    assert not syntax.valid_prefix(r"f{(x}) = 1")  # closed out of order
    assert not syntax.valid_prefix(r"a = b = c and x = 1")  # a second top-level "="
    assert syntax.valid_prefix(r"a = b and c = d")  # one "=" per equation


def test_untrained_model_writes_valid_prefixes_only_with_the_constraint(tokenizer):
    import torch  # why: optional heavy dependency, only for the model below
    from transformers import T5Config, T5ForConditionalGeneration, set_seed  # why: as above

    class ClosingBiased(T5ForConditionalGeneration):
        """An untrained T5 that prefers to close brackets and write "=": what the constraint is for."""

        def forward(self, *args, **kwargs):
            output = super().forward(*args, **kwargs)
            output.logits = output.logits + self.token_bias
            return output

    set_seed(0)
    model = ClosingBiased(T5Config(
        vocab_size=len(tokenizer), d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    model.token_bias = torch.zeros(len(tokenizer))
    model.token_bias[[token(tokenizer, "}"), token(tokenizer, ")")]] = 20.0
    model.token_bias[token(tokenizer, " =")] = 10.0
    prompts = [f"Given {text}, then obtain x = 1" for text in TEXTS]
    free = t5.generate(model, tokenizer, prompts, max_new_tokens=40)
    assert not any(map(syntax.valid_prefix, free)), free  # so the check below can fail
    for beams in (1, 3):
        constrained = t5.generate(model, tokenizer, prompts, num_beams=beams, max_new_tokens=40, balanced=True)
        assert all(map(syntax.valid_prefix, constrained)), constrained
        assert all("=" in text for text in constrained)  # the model's second choice, once "}" and ")" are ruled out


def test_a_tokenizer_without_the_separator_is_refused():
    bare = tokenization.train_latex_tokenizer(["x = y"], vocab_size=300)
    with pytest.raises(ValueError, match="separator 'and'"):
        syntax.BalancedBrackets(bare)
