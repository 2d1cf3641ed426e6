"""Where connectors touch a library's undocumented parts: one small module per library.

Each module names the private (or undocumented) names it uses, why, and the library
versions checked; tests/connectors/test_compat.py fails when a library changes them.
"""
