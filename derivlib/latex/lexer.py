"""The dialect's words and tokens: which commands name symbols, functions and accents, the
normalisation of model-output noise (:func:`normalise`), the tokenizer (:func:`tokenize`) and a
cursor over the tokens (:class:`TokenCursor`) that the name reader and the parser move along."""
from __future__ import annotations

import re

import sympy as sp

MAX_TOKENS = 1000
MAX_DEPTH = 40           # nested groups, fractions, functions

GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta",
    "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi", "varpi", "rho", "varrho", "sigma",
    "varsigma", "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta",
    "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega",
}
SYMBOL_COMMANDS = GREEK | {"hbar", "nabla", "ell", "imath", "jmath", "aleph", "wp"}
#: Commands that decorate one argument and make a new name (``\mathbf{E}``, ``\hat{H}``).
ACCENTS = {"mathbf", "mathbb", "mathcal", "mathrm", "mathit", "boldsymbol", "bm", "vec", "hat",
           "widehat", "dot", "ddot", "tilde", "widetilde", "bar", "overline", "breve", "check"}
#: Accents that only set a font: around anything but a name they are typography (the content).
FONTS = {"mathbf", "mathrm", "mathit", "boldsymbol", "bm"}
#: Superscripts that are part of a name, not a power: canonical text.
NAME_SUPERSCRIPTS = {"\\prime": "\\prime", "'": "\\prime", "*": "*", "\\ast": "*", "\\star": "*",
                     "\\dagger": "\\dagger", "\\prime\\prime": "\\prime\\prime", "''": "\\prime\\prime"}
FUNCTIONS = {
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "cot": sp.cot, "sec": sp.sec, "csc": sp.csc,
    "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh, "coth": sp.coth,
    "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan, "asin": sp.asin, "acos": sp.acos,
    "atan": sp.atan, "asinh": sp.asinh, "acosh": sp.acosh, "atanh": sp.atanh,
    "log": sp.log, "ln": sp.log, "exp": sp.exp,
}
#: ``\operatorname{...}`` names SymPy prints for its own functions (integrals produce these).
OPERATORNAMES = {
    "Ci": sp.Ci, "Si": sp.Si, "Ei": sp.Ei, "li": sp.li, "Li": sp.Li, "Shi": sp.Shi, "Chi": sp.Chi,
    "erf": sp.erf, "erfc": sp.erfc, "erfi": sp.erfi, "sign": sp.sign, "asin": sp.asin,
    "acos": sp.acos, "atan": sp.atan, "asinh": sp.asinh, "acosh": sp.acosh, "atanh": sp.atanh,
    "acot": sp.acot, "sinc": sp.sinc, "sech": sp.sech, "csch": sp.csch, "coth": sp.coth, "re": sp.re,
    "im": sp.im, "arg": sp.arg,
}
#: Standard LaTeX math commands with a meaning this dialect does not read (relations, operators,
#: arrows, dots, big operators, delimiters, layout). They stay errors: reading one as a name would
#: turn ``a \\leq b`` into a product. Any other unknown command word is a name (see
#: :func:`is_name_command`).
LATEX_COMMANDS = {
    "sum", "prod", "coprod", "lim", "limsup", "liminf", "sup", "inf", "max", "min", "det", "dim", "ker",
    "deg", "gcd", "hom", "Pr", "binom", "choose", "over", "atop", "pm", "mp", "leq", "le", "geq", "ge",
    "neq", "ne", "approx", "equiv", "sim", "simeq", "cong", "propto", "ll", "gg", "in", "notin", "ni",
    "subset", "subseteq", "supset", "supseteq", "cup", "cap", "setminus", "forall", "exists", "neg",
    "lnot", "land", "lor", "wedge", "vee", "oplus", "otimes", "odot", "circ", "bullet", "ast", "star",
    "dagger", "prime", "to", "gets", "mapsto", "rightarrow", "leftarrow", "leftrightarrow", "Rightarrow",
    "Leftarrow", "Leftrightarrow", "implies", "impliedby", "iff", "longrightarrow", "longleftarrow",
    "uparrow", "downarrow", "ldots", "cdots", "vdots", "ddots", "dots", "dotsc", "dotsb", "langle",
    "rangle", "lvert", "rvert", "lVert", "rVert", "vert", "Vert", "lfloor", "rfloor", "lceil", "rceil",
    "begin", "end", "text", "textrm", "textit", "textbf", "mbox", "label", "tag", "nonumber", "notag",
    "hline", "newline", "displaystyle", "textstyle", "scriptstyle", "quad", "qquad", "hspace", "vspace",
    "phantom", "underbrace", "overbrace", "underline", "stackrel", "overset", "underset", "substack",
    "mathop", "mathrel", "mathbin", "operatorname", "frac", "dfrac", "tfrac", "cfrac", "sqrt", "int",
    "iint", "iiint", "oint", "partial", "cdot", "times", "div", "infty", "left", "right", "big", "Big",
    "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr", "limits", "nolimits", "e",
    "perp", "parallel", "mid", "emptyset", "varnothing", "Re", "Im", "angle", "triangle",
    "square", "boxed", "color", "mathsf", "mathtt", "mathfrak", "mathscr",
}
SPACING = {"\\,", "\\;", "\\!", "\\:", "\\quad", "\\qquad", "\\left", "\\right", "\\displaystyle",
           "\\limits", "\\nolimits", "\\big", "\\Big", "\\bigl", "\\bigr", "\\Bigl", "\\Bigr"}
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<command>\\[A-Za-z]+|\\[,;:!{}|])
  | (?P<number>\d+(?:\.\d+)?|\.\d+)
  | (?P<letter>[A-Za-z])
  | (?P<punct>[{}()\[\]^_+\-=,|'*/<>!])
  | (?P<other>.)
""", re.VERBOSE)


class ParseError(ValueError):
    """The text is not an expression of the dialect; the message says where and why."""


# ----------------------------------------------------------------------------------- normalisation

_SPLIT_COMMAND = re.compile(r"\\\s+(?=[A-Za-z])")
_LEADING_WORD = re.compile(r"^\s*([A-Za-z]{2,})(?=[\s{(^_]|$)")


def normalise(text: str) -> str:
    """Undo the model-output noise that is not grammar: FLAN-T5's split commands (``\\ frac`` ->
    ``\\frac``), its missing leading backslash (``eta { (a) }`` -> ``\\eta { (a) }``), and
    ``\\left``/``\\right``."""
    text = _SPLIT_COMMAND.sub(r"\\", text)
    match = _LEADING_WORD.match(text)
    if match and _is_command_word(match.group(1)):
        text = text[: match.start(1)] + "\\" + text[match.start(1):]
    return text.replace("\\left", " ").replace("\\right", " ").strip()


def _is_command_word(word: str) -> bool:
    return (word in SYMBOL_COMMANDS or word in ACCENTS or word in FUNCTIONS
            or word in {"frac", "dfrac", "tfrac", "int", "iint", "iiint", "operatorname", "sqrt",
                        "partial", "cdot", "times"})


def is_name_command(command: str) -> bool:
    """Whether a command token names a symbol: a Greek or other symbol command, or an unknown word.

    The unknown-word rule: a command word that is neither in the dialect (symbols, accents,
    functions, structure) nor a standard LaTeX math command (:data:`LATEX_COMMANDS`) is an
    identifier named by the word, ``\\esilon`` the symbol ``\\esilon``. FLAN-T5 garbles Greek
    commands (``\\esilon``, ``\\usilon``, ``\\mathsilon``, ``\\operator``); read as names, the
    equation around them is checked like any other, and a garbled name is simply a new symbol.
    """
    name = command[1:]
    if name in SYMBOL_COMMANDS:
        return True
    return name.isalpha() and name not in ACCENTS and name not in FUNCTIONS and name not in LATEX_COMMANDS


def tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, text) tokens; whitespace and spacing commands dropped."""
    tokens = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        value = match.group()
        if kind == "space" or value in SPACING:
            continue
        if kind == "other":
            raise ParseError(f"unexpected character {value!r}")
        if kind == "command" and value.endswith("d") and value[1:-1] in SYMBOL_COMMANDS \
                and value[1:] not in SYMBOL_COMMANDS:
            # SymPy prints Derivative(f, chi, y) as \frac{d^{2}}{d \chid y}: no space after a command
            tokens += [("command", value[:-1]), ("letter", "d")]
            continue
        tokens.append((kind, value))
        if len(tokens) > MAX_TOKENS:
            raise ParseError(f"more than {MAX_TOKENS} tokens")
    return tokens


class TokenCursor:
    """A position in a token list, with the bounded nesting count every reader shares."""

    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    def peek(self, offset: int = 0) -> str | None:
        i = self.pos + offset
        return self.tokens[i][1] if i < len(self.tokens) else None

    def kind(self, offset: int = 0) -> str | None:
        i = self.pos + offset
        return self.tokens[i][0] if i < len(self.tokens) else None

    def next(self) -> str:
        if self.pos >= len(self.tokens):
            raise ParseError("unexpected end of input")
        value = self.tokens[self.pos][1]
        self.pos += 1
        return value

    def expect(self, value: str) -> None:
        got = self.peek()
        if got != value:
            raise ParseError(f"expected {value!r} at token {self.pos}, got {got!r}")
        self.pos += 1

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError(f"nested deeper than {MAX_DEPTH}")

    def leave(self) -> None:
        self.depth -= 1
