"""The SITHS test kit: what only tests, demos and benchmarks use, never the IdP.

- :mod:`siths_testkit.pki`: the test PKI that mirrors SITHS (CAs, cards in files or on SoftHSM2
  tokens, revocation, an OCSP responder);
- :mod:`siths_testkit.app_simulator`: the SITHS eID app, signing on a PKCS#11 token;
- :mod:`siths_testkit.login_driver`: a card login over HTTP without a browser (tests,
  benchmarks);
- :mod:`siths_testkit.local_cluster`: a throwaway PostgreSQL and nginx on loopback;
- ``demo_people.csv``: the invented people of ``make demo`` and docker/compose.yml, the
  holders of the test PKI's cards (``idp people import``);
- :mod:`siths_testkit.cli`: ``idp pki …``, ``idp card …`` and ``idp app …``, which the ``idp``
  command finds through the ``atkomsttjansten.cli`` entry points (pyproject.toml).

The dependency points one way: the test kit imports ``idp`` (``idp.hsa_id``), the IdP never
imports the test kit (tests/test_architecture.py holds the code to that).
"""
