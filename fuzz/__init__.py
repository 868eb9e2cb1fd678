"""Long property-based fuzz run (``python -m fuzz``, ``make fuzz``), beside ``bench/``.

:mod:`fuzz.harness` holds the properties; ``tests/fuzz/test_fuzz.py`` runs them with a
small budget under ``make test``.
"""
