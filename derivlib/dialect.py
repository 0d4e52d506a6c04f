"""What models write, normalised into the equations the LaTeX parser reads.

A model's answer is not always the " and "-joined equations of the authors' format. Chat models
in particular write math delimiters, ``align`` environments, chains ``a = b = c``, trailing
full stops and prose around their equations. :func:`split` turns an answer into its equations
by these rules, in this order, each one documented in the README's checking section:

1. **Delimiters**: ``$$``, ``$``, ``\\[ \\]``, ``\\( \\)`` are removed.
2. **Environments**: ``\\begin{align}``, ``aligned``, ``equation``, ``gather``, ``eqnarray`` (starred
   or not) and their ``\\end`` are removed; rows end at ``\\\\`` and at line breaks; ``&`` is removed.
3. **Separators**: the answer is cut at " and " (the authors' separator), at row ends, at ``;`` and at the
   prose words "where", "with", "so", "thus", "hence", "therefore", "then", "which gives".
   ``\\text{...}``, ``\\textrm{...}`` and ``\\mbox{...}`` are unwrapped to their words first.
4. **Lead-ins and punctuation**: "let", "we have", "we get", "now", "and"... at the start of a
   piece, and full stops, commas, colons and semicolons at its end, are removed.
5. **Prose**: a piece without ``=`` that reads as words (two or more words of letters only, not
   LaTeX) is prose, not an equation, and is dropped (counted by :func:`split_counted`).
6. **Commands**: ``\\dfrac`` and ``\\tfrac`` become ``\\frac``.
7. **Commutators**: ``[A, B]`` (one top-level comma inside square brackets) becomes
   ``(A B - B A)``.
8. **Chains**: a piece with k > 1 equals signs at the top level (outside brackets) becomes the k
   consecutive equations ``a = b``, ``b = c``..., each marked ``chain``.

Text in the authors' format passes through unchanged: none of these rules applies to it.

One more rule needs the reference, so the checker applies it (:func:`restore_lost_start`):

9. **Lost start**: FLAN-T5-large was fine-tuned with the first token of every target shifted out
   (the authors' label-shift bug), so its answers begin inside their first equation, which
   restates a premise (``{ (\\mathbf{A}, \\varepsilon_0) } = ...`` for ``M{(\\mathbf{A},
   \\varepsilon_0)} = ...``). When the first equation, spaces aside, is the end of a premise the
   prompt gives and begins where no token can (after a ``\\``, inside a command word, at
   ``{ } ^ _ ) ,``, or leaving a closing bracket unmatched), it is read as that premise.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence


_DELIMITERS = re.compile(r"\$\$|\$|\\\[|\\\]|\\\(|\\\)")
_ENVIRONMENT = re.compile(r"\\(?:begin|end)\s*\{\s*(?:align|aligned|equation|gather|gathered|eqnarray|split|"
                          r"multline|displaymath)\*?\s*\}")
_TEXT = re.compile(r"\\(?:text|textrm|mbox|textit|textbf)\s*\{([^{}]*)\}")
_ROW_END = re.compile(r"\\\\|\n")
_PROSE_SEPARATOR = re.compile(r"(?:^|(?<=[\s,]))(?:where|with|so that|so|thus|hence|therefore|then|which gives|"
                              r"which yields|giving|yielding)(?=\s)", re.IGNORECASE)
_LEAD_IN = re.compile(r"^\s*(?:(?:and|let|now|finally|first|next|also|or|we\s+(?:have|get|obtain|find)|"
                      r"this\s+gives|it\s+follows\s+that|substituting|differentiating|integrating)\b[\s,:]*)+",
                      re.IGNORECASE)
_TRAILING = re.compile(r"(?:\s|[.,;:]|\\[,;:!]|\\quad|\\qquad)+$")
_SEGMENT_END = re.compile(r"\s+and\s+|;")
_SPACING = re.compile(r"\\[,;:!]")
_SPLIT_COMMAND = re.compile(r"\\\s+(?=[A-Za-z])")
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}(?![A-Za-z])")
#: Words that are mathematics even without a backslash.
_MATH_WORDS = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "exp", "sinh", "cosh", "tanh", "sqrt",
               "int", "frac", "lim", "max", "min"}
_FRAC_VARIANT = re.compile(r"\\[dt]frac(?![A-Za-z])")
_OPENING = {"{": "}", "(": ")", "[": "]"}
_CLOSING = set(_OPENING.values())


@dataclass(frozen=True)
class Piece:
    """One equation of an answer, ready for the parser."""

    text: str
    part: int          # which piece of the answer it came from (0-based, after rules 1-5)
    chain: bool = False  # one link of a chain a = b = c


def _top_level_equals(text: str) -> list[int]:
    """Positions of the ``=`` signs outside brackets (not part of ``<=``, ``>=``, ``!=``, ``==``)."""
    depth, positions = 0, []
    for i, ch in enumerate(text):
        if ch in _OPENING:
            depth += 1
        elif ch in _CLOSING:
            depth = max(0, depth - 1)
        elif ch == "=" and depth == 0:
            before = text[i - 1] if i else ""
            after = text[i + 1] if i + 1 < len(text) else ""
            if before not in "<>!=" and after != "=":
                positions.append(i)
    return positions


def _commutators(text: str) -> str:
    """``[A, B]`` -> ``(A B - B A)`` where the brackets hold exactly one top-level comma."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "[" or (i and text[i - 1] == "\\"):
            out.append(text[i])
            i += 1
            continue
        depth, comma, j = 0, None, i
        while j < len(text):
            ch = text[j]
            if ch in _OPENING:
                depth += 1
            elif ch in _CLOSING:
                depth -= 1
                if depth == 0:
                    break
            elif ch == "," and depth == 1:
                comma = j if comma is None else -1
            j += 1
        if j < len(text) and text[j] == "]" and comma not in (None, -1):
            a, b = text[i + 1:comma].strip(), text[comma + 1:j].strip()
            if a and b:
                out.append(f"({_commutators(a)} {_commutators(b)} - {_commutators(b)} {_commutators(a)})")
                i = j + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _is_prose(text: str) -> bool:
    if "=" in text:
        return False
    latex = _SPLIT_COMMAND.sub("\\\\", text)  # FLAN-T5's "\ frac" is a command, not a word
    words = [w for w in _WORD.findall(latex) if w.lower() not in _MATH_WORDS]
    return len(words) >= 2 and sum(map(len, words)) >= 0.5 * len(latex.replace(" ", ""))


def _parts(answer: str) -> tuple[list[str], int]:
    text = _DELIMITERS.sub(" ", answer)
    text = _ENVIRONMENT.sub("\n", text)
    text = _TEXT.sub(lambda m: f" {m.group(1)} ", text)
    text = _SPACING.sub(" ", text.replace("&", " "))
    pieces, prose = [], 0
    for row in _ROW_END.split(text):
        for segment in _SEGMENT_END.split(row):
            for chunk in _PROSE_SEPARATOR.split(segment):
                chunk = _LEAD_IN.sub("", chunk)
                chunk = _TRAILING.sub("", chunk).strip()
                if not chunk:
                    continue
                if _is_prose(chunk):
                    prose += 1
                    continue
                pieces.append(chunk)
    return pieces, prose


def split_counted(answer: str) -> tuple[list[Piece], int]:
    """(the equations of ``answer``, how many prose pieces were dropped)."""
    parts, prose = _parts(answer)
    out = []
    for index, part in enumerate(parts):
        part = _commutators(_FRAC_VARIANT.sub(r"\\frac", part))
        equals = _top_level_equals(part)
        if len(equals) <= 1:
            out.append(Piece(part, index))
            continue
        sides = [part[a + 1:b].strip() for a, b in zip([-1] + equals, equals + [len(part)])]
        for left, right in zip(sides, sides[1:]):
            out.append(Piece(f"{left} = {right}", index, chain=True))
    return out, prose


def split(answer: str) -> list[Piece]:
    """The equations of a model's answer, by the module's rules."""
    return split_counted(answer)[0]


_COMMAND_WORD_END = re.compile(r"\\[A-Za-z]+$")
_SPACE = re.compile(r"\s+")


def unmatched_brackets(text: str) -> tuple[int, int]:
    """(closing brackets without an opening one, opening brackets never closed)."""
    stack, unmatched = [], 0
    for ch in text:
        if ch in _OPENING:
            stack.append(_OPENING[ch])
        elif ch in _CLOSING:
            if stack and stack[-1] == ch:
                stack.pop()
            else:
                unmatched += 1
    return unmatched, len(stack)


def _starts_inside_a_token(lost: str, rest: str) -> bool:
    return (lost.endswith("\\") or rest[0] in "{}^_)," or unmatched_brackets(rest)[0] > 0
            or (rest[0].isalpha() and _COMMAND_WORD_END.search(lost) is not None))


def restore_lost_start(first: str, premises: Sequence[str]) -> tuple[str, str] | None:
    """Rule 9: (the premise ``first`` is read as, the text put back before it), or None.

    ``first`` is an answer's first equation, ``premises`` the LaTeX of the premises its prompt
    gives. Spaces are ignored in the comparison: FLAN-T5 spaces its added tokens
    (``\\ frac { d }``), the authors' printer does not."""
    rest = _SPACE.sub("", first)
    if not rest or "=" not in rest:
        return None
    for premise in premises:
        whole = _SPACE.sub("", premise)
        if len(whole) > len(rest) and whole.endswith(rest):
            lost = whole[:len(whole) - len(rest)]
            if "=" not in lost and _starts_inside_a_token(lost, rest):
                return premise, lost
    return None
