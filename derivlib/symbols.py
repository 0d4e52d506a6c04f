"""Symbol vocabularies.

``VOCABULARY`` is the generator's vocabulary: 155 distinct LaTeX identifiers of physics flavour
(PAPER.md §2), written for this project. Every name is valid LaTeX on its own, every symbol is
commutative, and every one prints as itself with :func:`derivlib.derivation.to_latex` (tested for
all 155 in ``tests/test_symbols.py``). Names that SymPy's printer would re-read (``\\hbar`` ->
``\\bar{\\h}``, ``x^\\prime``) are either printed verbatim by our printer or avoided.

``RENAMING_SYMBOLS`` are the out-of-vocabulary Greek letters of the VR perturbation (PAPER.md §3);
none of them is in the vocabulary, so a renamed derivation contains no training symbol.
"""
from __future__ import annotations

import sympy as sp

VOCABULARY: tuple[str, ...] = (
    # electromagnetism
    r"\mathbf{E}", r"\mathbf{B}", r"\mathbf{D}", r"\mathbf{H}", r"\mathbf{J}", r"\mathbf{A}",
    r"\mathbf{P}", r"\mathbf{M}", r"\mathbf{S}", r"\mathbf{F}", r"\mathbf{J}_f", r"\mathbf{J}_b",
    r"\varepsilon_0", r"\varepsilon_r", r"\mu_0", r"\mu_r", r"\rho", r"\rho_f", r"\rho_b",
    r"\sigma", r"\sigma_b", r"\Phi_B", r"\Phi_E", "Q", "q", "q_e", "V", "I", "R", "C", "L",
    "E_x", "E_y", "E_z", "B_x", "B_y", "B_z", "c_0",
    # mechanics
    "m", "m_1", "m_2", "M", "M_E", "g", "G", "F", "F_x", "F_y", "F_N", "F_g", "F_c", "F_d",
    "p", "p_x", "p_y", "v", "v_0", "v_1", "v_2", "v_x", "v_y", "v_z", "v_t", "a", "a_x",
    "a_y", "x", "y", "z", "x_0", "y_0", "r", "r_0", "s", "h", "l", "k", "t", "t_0", "t_1",
    "t_2", "T", "U", "K", "W", "P", "C_d", r"\dot{x}", r"\dot{y}", r"\dot{z}",
    r"\ddot{x}", r"\dot{\theta}", r"\mathbf{r}", r"\mathbf{v}", r"\mathbf{p}", r"\mathbf{g}",
    r"\hat{\mathbf{r}}", r"\hat{\mathbf{x}}",
    # angles, waves, oscillations
    r"\theta", r"\theta_1", r"\theta_2", r"\phi", r"\phi_0", r"\varphi", r"\omega",
    r"\omega_0", r"\Omega", r"\lambda", r"\delta", r"\Delta", r"\chi", r"\mu", r"\eta",
    r"\pi", "f", "n", "n_1", "n_2", "A", "A_1", "A_2", "A_x", "A_y", "A_z", "b",
    "c", "u", "w", "d", "N",
    # quantum mechanics
    r"\hbar", r"\psi", r"\psi^*", r"\Psi", r"\Psi^*", r"\Psi_{\lambda}", r"\Psi_{nl}",
    r"\hat{H}", r"\hat{H}_{\lambda}", r"\hat{x}", r"\hat{p}", r"\hat{X}", r"\hat{P}",
    r"\mathbb{I}", "E", "E_n", r"E_{\lambda}", "H", "Z", r"a^{\dagger}", "P_e", "P_g",
    # thermodynamics and statistics
    "S", "k_B", "C_v",
)

#: Out-of-vocabulary symbols for variable renaming (VR), as in the authors' perturbation.
RENAMING_SYMBOLS: tuple[str, ...] = (
    r"\alpha", r"\beta", r"\gamma", r"\zeta", r"\iota", r"\kappa", r"\nu", r"\xi", r"\omicron",
    r"\tau", r"\upsilon",
)


def symbol(name: str) -> sp.Symbol:
    """A vocabulary symbol: always commutative, as the authors' ``symbol`` helper made them."""
    return sp.Symbol(name, commutative=True)


SYMBOLS: tuple[sp.Symbol, ...] = tuple(symbol(name) for name in VOCABULARY)
