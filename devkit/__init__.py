"""Fakes for the demo, the tests and the benchmarks — never imported by the product.

dovecot.py (a private Dovecot on loopback), postfix.py (a private Postfix beside it),
synth.py (believable synthetic mail),
graph.py (a local Microsoft Graph + Entra ID tenant, checked against graph_metadata/),
ews.py (a local Exchange Web Services endpoint, checked against ews_schema/),
zimbra.py (Zimbra's admin SOAP API). Their own dependencies (PyJWT, cryptography, lxml,
pyspnego) are the ``devkit`` extra; tests/test_devkit_apart.py checks that collect,
evaluate, doctor and the pipelines, analytics, connectors and contract packages load
none of this.
"""
