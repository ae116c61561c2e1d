"""Helpers for the browser tests (``tests/test_browser.py``): Chromium, axe-core, screenshots.

``package.json`` and ``package-lock.json`` here pin axe-core; ``make test`` runs ``npm ci`` in
this folder, and the tests inject ``node_modules/axe-core/axe.min.js`` into the pages.
"""
