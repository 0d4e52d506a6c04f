"""Syntax-constrained decoding: the decoder may only write balanced brackets and one top-level
``=`` per equation (not in the paper; off unless asked for).

transformers offers the hook (``prefix_allowed_tokens_fn`` of ``generate``) but no LaTeX grammar,
so the bracket bookkeeping is written here. What it rules out is what
:func:`derivlib.models.t5.is_well_formed` checks structurally before parsing: a closing bracket
that does not match the last open one, " and " or the end of the output while a bracket is open
or before the equation's ``=``, and a second top-level ``=``. An output cut by ``max_new_tokens``
can still be unbalanced, and a balanced one can still fail to parse.
"""
from __future__ import annotations

from ..base.vocabulary import JOIN

OPENING = {"{": "}", "(": ")", "[": "]"}
CLOSING = {close: open_ for open_, close in OPENING.items()}

#: (open brackets, innermost last; top-level ``=`` in the current equation)
State = tuple[str, int]
START: State = ("", 0)


def token_events(text: str) -> str:
    """The brackets and ``=`` of a token's text, in order; escaped ones (``\\{``) are literal."""
    events, previous = [], ""
    for char in text:
        if previous != "\\" and (char in OPENING or char in CLOSING or char == "="):
            events.append(char)
        previous = char
    return "".join(events)


def apply_events(state: State, events: str) -> State | None:
    """The state after ``events``, or None where they break the syntax."""
    stack, equals = state
    for event in events:
        if event in OPENING:
            stack += event
        elif event in CLOSING:
            if not stack or stack[-1] != CLOSING[event]:
                return None
            stack = stack[:-1]
        elif not stack:  # a top-level "="
            if equals:
                return None
            equals = 1
    return stack, equals


def valid_prefix(text: str) -> bool:
    """Whether ``text`` is something the constraint lets the decoder write: no bracket closed
    out of order and at most one top-level ``=`` per equation. True also of an output cut by
    ``max_new_tokens`` with brackets still open."""
    return all(apply_events(START, token_events(equation)) is not None for equation in text.split(JOIN))


class BalancedBrackets:
    """``prefix_allowed_tokens_fn`` for ``model.generate``: the tokens that keep the output's
    brackets balanced and each equation's top-level ``=`` single.

    One instance serves one ``generate`` call or several in turn (each step's states are kept
    for the next step, so a step costs one token per beam, not the whole prefix).
    """

    def __init__(self, tokenizer, separator: str = "and"):
        self.events: dict[int, str] = {}
        self.ends: set[int] = {tokenizer.eos_token_id}
        self.ignored = set(tokenizer.all_special_ids) - self.ends  # padding and the decoder start
        for token_id in range(len(tokenizer)):
            if token_id in self.ignored or token_id in self.ends:
                continue
            text = tokenizer.decode([token_id])
            if text.strip() == separator:
                self.ends.add(token_id)
            elif events := token_events(text):
                self.events[token_id] = events
        if len(self.ends) == 1:
            raise ValueError(f"balanced decoding needs a token for the equation separator {separator!r}, "
                             "and this tokenizer has none")
        self.vocabulary = len(tokenizer)
        self._allowed: dict = {}
        self._length, self._previous, self._current = -1, {}, {}

    def state(self, token_ids: tuple[int, ...]) -> State:
        """The state after a decoded prefix."""
        if len(token_ids) != self._length:  # a new step: the last one's states are its prefixes
            self._length, self._previous, self._current = len(token_ids), self._current, {}
        if token_ids in self._current:
            return self._current[token_ids]
        if not token_ids:
            return START
        before = self._previous.get(token_ids[:-1])
        if before is None:
            before = START
            for token_id in token_ids[:-1]:
                before = self._advance(before, token_id)
        state = self._current[token_ids] = self._advance(before, token_ids[-1])
        return state

    def _advance(self, state: State, token_id: int) -> State:
        if token_id in self.ends:
            return START
        if token_id in self.ignored or token_id not in self.events:
            return state
        # a prefix the constraint did not write (none in practice): keep going from where it was
        return apply_events(state, self.events[token_id]) or state

    def allowed(self, state: State):
        """The allowed token ids after ``state``, as a tensor (generate indexes a mask with them
        once per beam and step: with a tensor that takes 6 microseconds, with a list 140)."""
        import torch  # optional heavy dependency: only decoding needs it

        if state not in self._allowed:
            stack, equals = state
            banned = {token_id for token_id, events in self.events.items() if apply_events(state, events) is None}
            if stack or not equals:
                banned |= self.ends
            self._allowed[state] = torch.tensor([t for t in range(self.vocabulary) if t not in banned])
        return self._allowed[state]

    def __call__(self, batch_id: int, input_ids):
        return self.allowed(self.state(tuple(input_ids.tolist())))
