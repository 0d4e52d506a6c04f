"""Presentation: ``plots`` (figures, styled when called, never at import) and ``display``
(notebook display helpers). Nothing here writes files."""
