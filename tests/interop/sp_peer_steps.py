"""Browser steps shared by the Shibboleth and SimpleSAMLphp peer tests, and the snippets of
the IdP's integration guide they are configured with.

The peers and the IdP all listen on localhost (different ports), so a browser stand-in
follows every redirect and posts the forms it is given, as a browser does.
"""

from __future__ import annotations

import base64
import re
import zlib
from html import unescape
from pathlib import Path

import httpx
from defusedxml import ElementTree

from tests.helpers.support import parse_page, tls_context

BACK_TO_SERVICE = "Tillbaka till tjänsten"
CANCEL = "Avbryt"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"


def integration_snippets(idp_base_url: str, ca_file: Path) -> dict[str, list[str]]:
    """The code blocks of the IdP's served integration guide (``/saml/integration``), by the
    heading of their section (``"Shibboleth SP 3"``, ``"SimpleSAMLphp"``…), as an integrator
    copies them."""
    page = httpx.get(f"{idp_base_url}/saml/integration", verify=tls_context(ca_file), timeout=10)
    assert page.status_code == 200, page.text[:2000]
    snippets: dict[str, list[str]] = {}
    for section in page.text.split("<h2>")[1:]:
        heading = unescape(re.sub(r"<[^>]+>", "", section.split("</h2>", 1)[0])).strip()
        blocks = re.findall(r"<pre><code>(.*?)</code></pre>", section, re.S)
        snippets[heading] = [unescape(block) for block in blocks]
    return snippets


def follow_redirects(
    client: httpx.Client, response: httpx.Response, requests_seen: list[str] | None = None
) -> httpx.Response:
    """Follow redirects between the SP and the IdP (both on localhost, any port); the
    SAMLRequests of HTTP-Redirect binding URLs passed on the way go into ``requests_seen``."""
    while response.status_code in (301, 302, 303):
        url = response.url.join(response.headers["location"])
        if requests_seen is not None and "SAMLRequest" in url.params:
            requests_seen.append(redirect_binding_xml(url.params["SAMLRequest"]))
        response = client.get(url)
    return response


def redirect_binding_xml(value: str) -> str:
    """The XML of an HTTP-Redirect binding parameter (base64 of raw DEFLATE)."""
    return zlib.decompress(base64.b64decode(value), -15).decode()


def form_with_text(page: httpx.Response, text: str) -> tuple[str, str, dict[str, str]]:
    """(method, absolute action, fields) of the first form whose markup contains ``text``."""
    for markup in re.findall(r"<form\b.*?</form>", page.text, re.S | re.I):
        if text in markup:
            method = re.search(r'method="([^"]*)"', markup, re.I)
            form = parse_page(markup).forms[0]
            action = str(page.url.join(form["action"])) if form["action"] else str(page.url)
            return (method.group(1).lower() if method else "get"), action, form["fields"]
    raise AssertionError(f"no form with {text!r} on {page.url}: {page.text[:3000]}")


def saml_form(page: httpx.Response) -> dict | None:
    """The page's form carrying a SAMLResponse or SAMLRequest, if any."""
    for form in parse_page(page.text).forms:
        if {"SAMLResponse", "SAMLRequest"} & set(form["fields"]):
            return form
    return None


def post_saml_form(
    client: httpx.Client, page: httpx.Response, expected_action: str | None = None
) -> httpx.Response:
    """Post the page's SAML form (the IdP's auto-posting form), checking where it goes."""
    form = saml_form(page)
    assert form is not None, f"no SAML form on {page.url}: {page.text[:3000]}"
    action = str(page.url.join(form["action"]))
    if expected_action is not None:
        assert action == expected_action, action
    return follow_redirects(client, client.post(action, data=form["fields"]))


def press_cancel(client: httpx.Client, idp_page: httpx.Response) -> httpx.Response:
    """Press "Avbryt" on an IdP page (the chooser, the choice of tjänste-id); returns the IdP's
    page that follows."""
    method, action, fields = form_with_text(idp_page, CANCEL)
    assert method == "post", method
    return follow_redirects(client, client.post(action, data=fields))


def back_to_service(client: httpx.Client, idp_page: httpx.Response, acs_url: str) -> httpx.Response:
    """Press "Tillbaka till tjänsten" on an IdP error page: it must post the signed error
    Response to ``acs_url``, the SP's ACS from its metadata. Returns the SP's page."""
    method, action, fields = form_with_text(idp_page, BACK_TO_SERVICE)
    assert (method, action) == ("post", acs_url), (method, action)
    assert "SAMLResponse" in fields, fields
    return follow_redirects(client, client.post(action, data=fields))


def requested_authn_context(authn_request_xml: str) -> tuple[str, list[str]]:
    """(Comparison, AuthnContextClassRefs) of an AuthnRequest; Comparison defaults to exact."""
    root = ElementTree.fromstring(authn_request_xml.encode())
    requested = root.find(f"{{{SAMLP}}}RequestedAuthnContext")
    if requested is None:
        return "", []
    refs = [ref.text or "" for ref in requested.findall(f"{{{SAML}}}AuthnContextClassRef")]
    return requested.get("Comparison", "exact"), refs
