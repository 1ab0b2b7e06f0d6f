"""Benchmarks: the converter service against soffice per document and bare unoserver.

Run ``python -m bench`` (``--quick`` for a subset, ``--out BENCHMARKS.md`` to
write the results file). Everything is measured side by side in one run and
reported as tables and ratios; nothing here asserts.
"""
