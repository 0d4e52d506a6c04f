"""Generated LaTeX -> SymPy, for the dialect the models produce.

The dialect is SymPy's own LaTeX output as the derivations are printed
(:func:`derivlib.derivation.to_latex`): undefined functions ``\\eta{(a)}``,
``\\operatorname{F_c}{(x,y)}``, ``\\eta^{2}{(a)}``; derivatives ``\\frac{d}{d a}``,
``\\frac{d^{2}}{d a^{2}}``, ``\\frac{\\partial^{2}}{\\partial y\\partial x}``; integrals
``\\int f dx``; Greek, ``\\mathbf{E}``, ``\\hat{H}``, primed and subscripted symbols;
``e^{x}`` is ``exp(x)`` and ``\\log`` the natural logarithm; plus the noise of model outputs:
FLAN-T5's tokenizer splits ``\\frac`` into ``\\ frac { d } { d a }`` and never emits a leading
backslash; ``\\cdot``/``\\times``; dropped braces (``\\eta(a)``, ``x_0``, ``\\hat H``).

Why a hand-written recursive-descent parser over a regex tokenizer rather than a library:
SymPy's ANTLR ``parse_latex`` reads this dialect wrongly (``\\eta{(a)}`` as ``a*eta``, ``e^{a}``
as a symbol ``e``) and, even after rewriting, manages about 20 equations per second; and the
dialect is context-sensitive in ways an LALR grammar (lark) cannot state without lexer hacks:
an integral's scope ends at ``d`` followed by its variable, ``^{\\prime}`` belongs to a name while
``^{2}`` is a power, ``X(a,b)`` is a function application only when ``X`` is a function. A
grammar of about fifteen productions written as functions states these rules directly.

Where SymPy's printing is ambiguous (a product after a derivative operator), the candidate
readings are printed back with :func:`derivlib.derivation.to_latex` and the one that reproduces
the text is kept (:meth:`derivlib.latex.parser.Parser.side`).

Every parse is bounded structurally (input length, token count, nesting depth, derivative order,
and the exact numbers it holds: :mod:`.numbers`), never by a clock, so it is safe in any thread
or worker. A power or factorial of numbers too large to hold (``10^{10^{10}}``, ``(10^{6})!``)
fails with ``too_large`` set in its :class:`ParseResult`: SymPy would compute it as soon as it
met it in a sum, a product or another power.

A command word that is neither in the dialect nor a standard LaTeX math command is read as a
name (:func:`derivlib.latex.lexer.is_name_command`): FLAN-T5 writes garbled Greek such as
``\\esilon`` or ``\\mathsilon``, and ``\\esilon{(x)}`` is then a function like ``\\eta{(x)}``.
Names come back canonical (:func:`canonical_name`): ``F_N``, ``F_{N}`` and ``F_{ N }`` are one
symbol. :func:`canonicalize` renames a SymPy expression's symbols the same way, so a parse can be
compared with ``==`` to an equation read from ``srepr``.

Modules: :mod:`.lexer` (the dialect's words, normalisation, tokens), :mod:`.names` (names and
their canonical spelling), :mod:`.numbers` (budgets on exact numbers), :mod:`.parser` (the
grammar).
"""
from __future__ import annotations

from .lexer import LATEX_COMMANDS, MAX_DEPTH, MAX_TOKENS, ParseError, is_name_command, normalise, tokenize
from .names import canonical_name, canonicalize
from .numbers import MAX_DIGITS, MAX_EXACT_FACTORIAL, MAX_FACTORIAL, NumberTooLarge, magnitude
from .parser import MAX_DERIVATIVE_ORDER, MAX_LENGTH, ParseResult, parse, parse_equation

__all__ = ["parse", "parse_equation", "ParseResult", "ParseError", "normalise", "tokenize", "canonical_name",
           "canonicalize", "is_name_command", "LATEX_COMMANDS", "MAX_LENGTH", "MAX_TOKENS", "MAX_DEPTH",
           "MAX_DERIVATIVE_ORDER", "MAX_DIGITS", "MAX_EXACT_FACTORIAL", "MAX_FACTORIAL", "NumberTooLarge", "magnitude"]
