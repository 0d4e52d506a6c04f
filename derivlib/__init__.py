"""derivlib: reproduce and extend "Generating Mathematical Derivations with Large Language Models"
(Meadows, Valentino, Freitas, 2023). Notebooks in ``notebooks/`` wire the stages together; all
logic lives here."""
__version__ = "0.1.0"
