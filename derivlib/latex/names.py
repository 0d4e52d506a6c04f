"""Names: the canonical spelling of a symbol or function name (:func:`canonical_name`), the
part of the grammar that reads one (:class:`NameReader`), and :func:`canonicalize`, which renames
a SymPy expression's symbols the same way so that a parse compares equal to an srepr reading."""
from __future__ import annotations

import functools
import re

import sympy as sp
from sympy.core.function import AppliedUndef, UndefinedFunction

from .lexer import ACCENTS, NAME_SUPERSCRIPTS, ParseError, TokenCursor, is_name_command, normalise, tokenize


class NameReader(TokenCursor):
    """The names of the grammar: a base (letter, Greek or other symbol command, accented name),
    a subscript, and name superscripts (primes, stars, daggers)."""

    def identifier(self) -> str:
        """A name's canonical text: base, then ``_{sub}``, then name superscripts."""
        self.enter()
        base = self.name_base()
        subscript = superscript = ""
        while True:
            if self.peek() == "_" and not subscript:
                self.pos += 1
                subscript = self.script_text()
            elif self.peek() == "'":
                count = 0
                while self.peek() == "'":
                    self.pos += 1
                    count += 1
                superscript = "\\prime" * count
            elif self.peek() == "^" and not superscript:
                text = self._name_superscript()
                if text is None:
                    break
                superscript = text
            else:
                break
        self.leave()
        name = base
        if subscript:
            name += "_{" + subscript + "}"
        if superscript:
            name += "^{" + superscript + "}"
        return name

    def name_base(self) -> str:
        kind, value = self.kind(), self.peek()
        if kind == "letter":
            self.pos += 1
            return value
        if kind == "command" and is_name_command(value):  # \alpha, or an unknown word (lexer)
            self.pos += 1
            return value
        if kind == "command" and value[1:] in ACCENTS:
            self.pos += 1
            if self.peek() == "{":
                self.pos += 1
                inner = self.identifier()
                self.expect("}")
            else:
                inner = self.identifier()
            return f"{value}{{{inner}}}"
        raise ParseError(f"expected a name at token {self.pos}, got {value!r}")

    def _name_superscript(self) -> str | None:
        saved = self.pos
        self.pos += 1  # '^'
        if self.peek() == "{":
            self.pos += 1
            parts = []
            while self.peek() not in ("}", None):
                parts.append(self.next())
                if len(parts) > 2:
                    break
            text = "".join(parts)
            if self.peek() == "}" and text in NAME_SUPERSCRIPTS:
                self.pos += 1
                return NAME_SUPERSCRIPTS[text]
        elif self.peek() in NAME_SUPERSCRIPTS:
            return NAME_SUPERSCRIPTS[self.next()]
        self.pos = saved
        return None

    def script_text(self) -> str:
        """A subscript's canonical text (``_0``, ``_{0}``, ``_{\\mathbf{B}}``, ``_{nl}``)."""
        if self.peek() != "{":
            kind, value = self.kind(), self.peek()
            if kind in ("letter", "number"):
                self.pos += 1
                return value
            if kind == "command":
                return self.identifier()
            raise ParseError(f"expected a subscript at token {self.pos}, got {value!r}")
        self.pos += 1
        parts = []
        while self.peek() != "}":
            kind, value = self.kind(), self.peek()
            if value is None:
                raise ParseError("unclosed subscript")
            if kind == "command" and (value[1:] in ACCENTS or is_name_command(value)):
                parts.append(self.identifier())
            elif kind in ("letter", "number") or value in ("+", "-", ",", "*", "'"):
                self.pos += 1
                parts.append(value)
            else:
                raise ParseError(f"unexpected {value!r} in a subscript")
        self.pos += 1
        text = ""
        for part in parts:
            if re.search(r"\\[A-Za-z]+$", text) and part[0].isalpha():
                text += " "  # \\lambda x, not \\lambdax
            text += part
        if not text:
            raise ParseError("empty subscript")
        return text


@functools.lru_cache(maxsize=16384)
def canonical_name(name: str) -> str:
    """The canonical spelling of a symbol or function name, whatever braces and spaces it had:
    subscripts braced, name superscripts (primes, stars, daggers) braced after the subscript."""
    try:
        parser = NameReader(tokenize(normalise(name)))
        canonical = parser.identifier()
        if parser.pos != len(parser.tokens):
            return name
        return canonical
    except ParseError:
        return name


@functools.lru_cache(maxsize=65536)
def canonical_symbol(name: str, assumptions: tuple) -> sp.Symbol:
    return sp.Symbol(canonical_name(name), **dict(assumptions))


def canonicalize(expr: sp.Basic) -> sp.Basic:
    """``expr`` with every symbol and undefined function renamed to its canonical name, so it
    compares equal (``==``) to the parse of its LaTeX."""
    mapping = {}
    for symbol in expr.atoms(sp.Symbol):  # atoms, not free_symbols: integration variables too
        canonical = canonical_name(symbol.name)
        if canonical != symbol.name:
            mapping[symbol] = sp.Symbol(canonical, **symbol.assumptions0)
    for application in expr.atoms(AppliedUndef):
        name = application.func.__name__
        canonical = canonical_name(name)
        if canonical != name:
            mapping[application.func] = sp.Function(canonical)
    if not mapping:
        return expr
    functions = {k: v for k, v in mapping.items() if isinstance(k, UndefinedFunction)}
    symbols = {k: v for k, v in mapping.items() if not isinstance(k, UndefinedFunction)}
    if functions:
        expr = expr.replace(lambda e: isinstance(e, AppliedUndef) and e.func in functions,
                            lambda e: functions[e.func](*e.args))
    return expr.xreplace(symbols) if symbols else expr
