"""Hand-built malformed protocol input, over real sockets: SAML messages that are not what they
claim (bad base64, deflate bombs, DTDs, wrong roots, signature wrapping), OIDC requests with
bad, duplicated and huge parameters, and app API bodies and certificates that are not what the
schema promises. Each answer must be quick, below 500, carry no Success Response, code or
token, and leave no traceback in the server's log.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import time
import urllib.parse

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from defusedxml import ElementTree
from lxml import etree
from saml2 import BINDING_HTTP_POST

from idp.methods.other_device.signature import RSA_PKCS1_SHA256
from tests.adversarial.figures import FIGURES
from tests.adversarial.http_fuzz import (
    DEFLATE_BOMB,
    SAML_VALUES,
    FuzzRequest,
    assert_no_traceback,
    check_answer,
    send,
)
from tests.conftest import IdpUnderTest
from tests.helpers.flows import open_login, started_login
from tests.helpers.saml_sp import RSA_SHA256
from tests.helpers.support import parse_page, reason_code, tls_context
from tests.helpers.treserva import Treserva

# An answer to one malformed message that takes longer than this is a hang.
ANSWER_WITHIN_SECONDS = 10.0
PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
ASSERTION = "urn:oasis:names:tc:SAML:2.0:assertion"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"

GARBAGE = [
    "",
    "!!!not base64!!!",
    "QUJD",
    "A" * 50_000,
    DEFLATE_BOMB,
    base64.b64encode(b"\x00" * 100).decode(),
    *SAML_VALUES,
]


def timed_send(
    client: httpx.Client, base_url: str, request: FuzzRequest, area: str
) -> httpx.Response:
    started = time.monotonic()
    answer = send(client, base_url, request, area)
    elapsed = time.monotonic() - started
    assert elapsed < ANSWER_WITHIN_SECONDS, f"{elapsed:.1f} s for {request.describe()}"
    check_answer(answer, request, area)
    return answer


def form(fields: list[tuple[str, str]]) -> bytes:
    return urllib.parse.urlencode(fields).encode("ascii")


def query(fields: list[tuple[str, str]]) -> str:
    return urllib.parse.urlencode(fields)


def saml_requests(path: str, names: tuple[str, ...]) -> list[FuzzRequest]:
    """Every garbage value under each message name, by GET (Redirect) or POST."""
    requests = []
    for name in names:
        for value in GARBAGE:
            fields = [(name, value), ("RelayState", "r")]
            if path.endswith("/redirect"):
                requests.append(FuzzRequest("GET", path, query(fields)))
            else:
                content = {"Content-Type": "application/x-www-form-urlencoded"}
                requests.append(FuzzRequest("POST", path, "", content, form(fields)))
    return requests


def _client(ca_file: object) -> httpx.Client:
    return httpx.Client(verify=tls_context(ca_file), follow_redirects=False, timeout=30)  # type: ignore[arg-type]


IDP_SAML_ENDPOINTS = [
    ("/saml/sso/redirect", ("SAMLRequest",)),
    ("/saml/sso/post", ("SAMLRequest",)),
    ("/saml/slo/redirect", ("SAMLRequest", "SAMLResponse")),
    ("/saml/slo/post", ("SAMLRequest", "SAMLResponse")),
]
TRESERVA_SAML_ENDPOINTS = [
    ("/saml/acs", ("SAMLResponse",)),
    ("/saml/slo/redirect", ("SAMLRequest", "SAMLResponse")),
    ("/saml/slo/post", ("SAMLRequest", "SAMLResponse")),
]


@pytest.mark.parametrize(("path", "names"), IDP_SAML_ENDPOINTS)
def test_idp_refuses_malformed_saml_quickly(
    idp: IdpUnderTest, path: str, names: tuple[str, ...]
) -> None:
    offset = len(idp.server.log())
    with _client(idp.ca_file) as client:
        for request in saml_requests(path, names):
            answer = timed_send(client, idp.base_url, request, "malformed saml")
            assert answer.status_code in (400, 403, 404, 405, 413, 414, 431), request.describe()
    assert_no_traceback(idp.server.log()[offset:], "malformed saml")


@pytest.mark.parametrize(("path", "names"), TRESERVA_SAML_ENDPOINTS)
def test_treserva_refuses_malformed_saml_quickly(
    treserva: Treserva, path: str, names: tuple[str, ...]
) -> None:
    offset = len(treserva.server.log())
    with _client(treserva.idp.ca_file) as client:
        for request in saml_requests(path, names):
            timed_send(client, treserva.base_url, request, "malformed saml")
        assert client.get(f"{treserva.base_url}/me").status_code == 303, "somebody logged in"
    assert_no_traceback(treserva.server.log()[offset:], "malformed saml")


# --- signature wrapping on a signed POST AuthnRequest ----------------------------------------


def signed_passive_request(idp: IdpUnderTest) -> tuple[str, str, bytes]:
    """(SSO URL, request ID, XML) of an AuthnRequest the test SP signed, asking IsPassive so an
    accepted request is answered with a NoPassive Response naming it."""
    client = idp.sp.client
    sso = client.metadata.single_sign_on_service(
        next(iter(client.metadata.identity_providers())), BINDING_HTTP_POST
    )[0]["location"]
    request_id, request = client.create_authn_request(
        sso,
        binding=BINDING_HTTP_POST,
        sign=True,
        sign_alg=RSA_SHA256,
        digest_alg=SHA256,
        is_passive="true",
    )
    return sso, request_id, str(request).encode("utf-8")


def _forged_copy(original: etree._Element, new_id: str) -> etree._Element:
    forged = copy.deepcopy(original)
    forged.set("ID", new_id)
    for signature in forged.findall(f"{{{DSIG}}}Signature"):
        forged.remove(signature)
    return forged


def xsw_variants(xml: bytes) -> dict[str, bytes]:
    """Signature-wrapping and comment tricks on one signed AuthnRequest."""
    original = etree.fromstring(xml)
    variants: dict[str, bytes] = {}

    # 1. A forged request with the signed one tucked into its Extensions.
    outer = _forged_copy(original, "_forged-outer")
    extensions = etree.SubElement(outer, f"{{{PROTOCOL}}}Extensions")
    extensions.append(copy.deepcopy(original))
    issuer = outer.find(f"{{{ASSERTION}}}Issuer")
    outer.remove(extensions)
    outer.insert(outer.index(issuer) + 1 if issuer is not None else 0, extensions)
    variants["forged outer, signed inside Extensions"] = etree.tostring(outer)

    # 2. A forged request carrying the signed one's Signature (which names the signed ID),
    #    with the signed request inside the Signature's Object.
    forged = _forged_copy(original, "_forged-with-signature")
    signature = copy.deepcopy(original.find(f"{{{DSIG}}}Signature"))
    assert signature is not None
    holder = etree.SubElement(signature, f"{{{DSIG}}}Object")
    holder.append(copy.deepcopy(original))
    forged.insert(1, signature)
    variants["forged with the signature, signed inside ds:Object"] = etree.tostring(forged)

    # 3. The signed request's ID changed after signing.
    renamed = copy.deepcopy(original)
    renamed.set("ID", "_renamed")
    variants["ID changed after signing"] = etree.tostring(renamed)

    # 4. Two requests under a root that is not an AuthnRequest.
    wrapper = etree.Element(f"{{{PROTOCOL}}}Wrapper")
    wrapper.append(copy.deepcopy(original))
    wrapper.append(_forged_copy(original, "_forged-sibling"))
    variants["wrong root holding signed and forged"] = etree.tostring(wrapper)

    # 5. A comment inside the signed Issuer (exclusive c14n drops it, the digest still holds):
    #    a reader that takes the first text node only would see another issuer.
    text = xml.decode("utf-8")
    if "sp.example.test" in text:
        variants["comment inside Issuer"] = text.replace(
            "sp.example.test", "sp.example<!---->.test", 1
        ).encode("utf-8")

    # 6. The signed request with an ACS URL of the attacker's added (unsigned) after signing.
    retargeted = copy.deepcopy(original)
    retargeted.set("AssertionConsumerServiceURL", "https://evil.example/acs")
    variants["ACS changed after signing"] = etree.tostring(retargeted)
    return variants


def acted_on(answer: httpx.Response) -> tuple[str | None, str | None]:
    """(InResponseTo, ACS) of the Response the IdP answered with, or (None, None)."""
    if started_login(answer):
        return "(a pending login)", None
    forms = parse_page(answer.text).forms if answer.status_code == 200 else []
    if not forms or "SAMLResponse" not in forms[0]["fields"]:
        return None, None
    root = ElementTree.fromstring(base64.b64decode(forms[0]["fields"]["SAMLResponse"]))
    return root.get("InResponseTo"), forms[0]["action"]


@pytest.mark.parametrize(
    "variant",
    [
        "forged outer, signed inside Extensions",
        "forged with the signature, signed inside ds:Object",
        "ID changed after signing",
        "wrong root holding signed and forged",
        "comment inside Issuer",
        "ACS changed after signing",
    ],
)
def test_signature_wrapping_never_gets_the_forgery_answered(
    idp: IdpUnderTest, variant: str
) -> None:
    sso, request_id, xml = signed_passive_request(idp)
    wrapped = xsw_variants(xml)[variant]
    fields = [("SAMLRequest", base64.b64encode(wrapped).decode()), ("RelayState", "xsw")]
    request = FuzzRequest(
        "POST",
        urllib.parse.urlsplit(sso).path,
        "",
        {"Content-Type": "application/x-www-form-urlencoded"},
        form(fields),
    )
    offset = len(idp.server.log())
    with _client(idp.ca_file) as client:
        answer = timed_send(client, idp.base_url, request, "signature wrapping")
    in_response_to, acs = acted_on(answer)
    if in_response_to is not None:
        assert (in_response_to, acs) == (request_id, idp.sp.acs_url), (variant, in_response_to)
    else:
        assert answer.status_code == 400 and reason_code(answer.text), answer.text[:300]
    assert_no_traceback(idp.server.log()[offset:], "signature wrapping")


# --- xs:boolean in AuthnRequests: true/1 and false/0 mean the same --------------------------


@pytest.mark.parametrize("lexical", ["true", "1", "false", "0"])
def test_is_passive_is_read_as_an_xml_schema_boolean(idp: IdpUnderTest, lexical: str) -> None:
    client = idp.sp.client
    sso = client.metadata.single_sign_on_service(
        next(iter(client.metadata.identity_providers())), BINDING_HTTP_POST
    )[0]["location"]
    request_id, request = client.create_authn_request(
        sso,
        binding=BINDING_HTTP_POST,
        sign=True,
        sign_alg=RSA_SHA256,
        digest_alg=SHA256,
        is_passive=lexical,
    )
    root = etree.fromstring(str(request).encode())
    assert root.get("IsPassive") == lexical, etree.tostring(root)[:300]
    with _client(idp.ca_file) as browser_client:
        answer = browser_client.post(
            sso, data={"SAMLRequest": base64.b64encode(etree.tostring(root)).decode()}
        )
    FIGURES.tried("xs:boolean")
    in_response_to, _ = acted_on(answer)
    if lexical in ("true", "1"):
        assert in_response_to == request_id, f"IsPassive={lexical!r} was not honoured"
    else:
        assert in_response_to == "(a pending login)", f"IsPassive={lexical!r}: {answer.text[:300]}"


# --- OIDC ------------------------------------------------------------------------------------

OIDC_CLIENT = "adversarial-rp"
OIDC_CALLBACK = "https://rp.adversarial.test/callback"
EVIL = "https://evil.example/cb"


@pytest.fixture(scope="module")
def oidc_client(idp: IdpUnderTest) -> str:
    """A client_secret_basic client (no keys): its secret."""
    result = idp.idp_cli(
        "oidc", "client", "add", OIDC_CLIENT, "--name", "Adversarial RP", "--redirect-uri",
        OIDC_CALLBACK, "--post-logout-redirect-uri", "https://rp.adversarial.test/out",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return next(
        line.split(": ", 1)[1]
        for line in result.stdout.splitlines()
        if line.startswith("client_secret: ")
    )


def authorize(fields: list[tuple[str, str]], raw: str = "") -> FuzzRequest:
    return FuzzRequest("GET", "/oidc/authorize", raw or query(fields))


GOOD_AUTHORIZE = [
    ("client_id", OIDC_CLIENT),
    ("redirect_uri", OIDC_CALLBACK),
    ("response_type", "code"),
    ("scope", "openid"),
    ("state", "s"),
    ("nonce", "n"),
]
ALG_NONE_JWT = (
    base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    + "."
    + base64.urlsafe_b64encode(
        f'{{"iss":"{OIDC_CLIENT}","sub":"{OIDC_CLIENT}","aud":"x","exp":9999999999,'
        f'"jti":"j"}}'.encode()
    )
    .rstrip(b"=")
    .decode()
    + "."
)


def _without(name: str) -> list[tuple[str, str]]:
    return [pair for pair in GOOD_AUTHORIZE if pair[0] != name]


AUTHORIZE_CASES = {
    "duplicate redirect_uri": authorize([*GOOD_AUTHORIZE, ("redirect_uri", EVIL)]),
    "duplicate client_id": authorize([("client_id", "unknown"), *GOOD_AUTHORIZE]),
    "encoded duplicate redirect_uri": authorize(
        [], query(GOOD_AUTHORIZE) + "&redirect%5Furi=" + urllib.parse.quote(EVIL, safe="")
    ),
    "evil redirect_uri": authorize([*_without("redirect_uri"), ("redirect_uri", EVIL)]),
    "redirect_uri with a suffix": authorize(
        [*_without("redirect_uri"), ("redirect_uri", OIDC_CALLBACK + "/../../evil")]
    ),
    "implicit flow": authorize([*_without("response_type"), ("response_type", "token")]),
    "hybrid flow": authorize([*_without("response_type"), ("response_type", "code id_token")]),
    "no openid scope": authorize([*_without("scope"), ("scope", "profile")]),
    "prompt none without a session": authorize([*GOOD_AUTHORIZE, ("prompt", "none")]),
    "request object alg none": authorize([*GOOD_AUTHORIZE, ("request", ALG_NONE_JWT)]),
    "huge state": authorize([*_without("state"), ("state", "s" * 30_000)]),
    "unknown client": authorize([*_without("client_id"), ("client_id", "nobody")]),
    "empty everything": authorize([(name, "") for name, _ in GOOD_AUTHORIZE]),
    "max_age garbage": authorize([*GOOD_AUTHORIZE, ("max_age", "-1e309")]),
}


def _token(fields: list[tuple[str, str]], headers: dict[str, str] | None = None) -> FuzzRequest:
    return FuzzRequest(
        "POST",
        "/oidc/token",
        "",
        {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
        form(fields),
    )


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_CASES = {
    "no grant_type": _token([("code", "x")], _basic(OIDC_CLIENT, "wrong")),
    "duplicate grant_type": _token(
        [("grant_type", "authorization_code"), ("grant_type", "client_credentials"), ("code", "x")],
        _basic(OIDC_CLIENT, "wrong"),
    ),
    "garbage code, wrong secret": _token(
        [("grant_type", "authorization_code"), ("code", "x"), ("redirect_uri", OIDC_CALLBACK)],
        _basic(OIDC_CLIENT, "wrong"),
    ),
    "client_assertion for a client_secret_basic client": _token(
        [
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("redirect_uri", OIDC_CALLBACK),
            ("client_id", OIDC_CLIENT),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln"),
        ]
    ),
    "alg none client_assertion": _token(
        [
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("client_id", OIDC_CLIENT),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", ALG_NONE_JWT),
        ]
    ),
    "basic with no colon": _token(
        [("grant_type", "authorization_code"), ("code", "x")],
        {"Authorization": "Basic " + base64.b64encode(b"nocolon").decode()},
    ),
    "basic not base64": _token(
        [("grant_type", "authorization_code"), ("code", "x")], {"Authorization": "Basic %%%"}
    ),
    "json body": FuzzRequest(
        "POST",
        "/oidc/token",
        "",
        {"Content-Type": "application/json", **_basic(OIDC_CLIENT, "wrong")},
        b'{"grant_type":"authorization_code","code":"x"}',
    ),
    "refresh_token grant": _token(
        [("grant_type", "refresh_token"), ("refresh_token", "x")], _basic(OIDC_CLIENT, "wrong")
    ),
    "huge code": _token(
        [("grant_type", "authorization_code"), ("code", "c" * 100_000)],
        _basic(OIDC_CLIENT, "wrong"),
    ),
}
USERINFO_CASES = {
    "bearer garbage": FuzzRequest("GET", "/oidc/userinfo", "", {"Authorization": "Bearer x.y.z"}),
    "bearer alg none": FuzzRequest(
        "GET", "/oidc/userinfo", "", {"Authorization": f"Bearer {ALG_NONE_JWT}"}
    ),
    "access_token in the query": FuzzRequest("GET", "/oidc/userinfo", "access_token=abc"),
    "access_token in a form": FuzzRequest(
        "POST",
        "/oidc/userinfo",
        "",
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"access_token=abc",
    ),
    "two authorization schemes": FuzzRequest(
        "GET", "/oidc/userinfo", "", {"Authorization": "Bearer a, Basic b"}
    ),
    "end-session to an evil URI": FuzzRequest(
        "GET",
        "/oidc/end-session",
        query(
            [("id_token_hint", ALG_NONE_JWT), ("post_logout_redirect_uri", EVIL), ("state", "s")]
        ),
    ),
}


@pytest.mark.parametrize(
    "case", [*AUTHORIZE_CASES, *TOKEN_CASES, *USERINFO_CASES], ids=lambda case: case
)
def test_oidc_refuses_bad_requests_without_issuing_anything(
    idp: IdpUnderTest, oidc_client: str, case: str
) -> None:
    request = {**AUTHORIZE_CASES, **TOKEN_CASES, **USERINFO_CASES}[case]
    offset = len(idp.server.log())
    with _client(idp.ca_file) as client:
        answer = timed_send(client, idp.base_url, request, "oidc")
    location = answer.headers.get("location", "")
    assert "evil.example" not in urllib.parse.urlsplit(location).netloc, location
    if request.path == "/oidc/token":
        assert answer.status_code in (400, 401), (answer.status_code, answer.text[:300])
    assert_no_traceback(idp.server.log()[offset:], "oidc")


# --- the app API: bodies and certificates that are not what the schema promises --------------


def test_app_api_body_that_is_not_utf8_json_is_refused(idp: IdpUnderTest) -> None:
    offset = len(idp.server.log())
    with _client(idp.ca_file) as client:
        for path in ("/app-api/v1/scan", "/app-api/v1/sign", "/app-api/v1/cancel"):
            for content_type in ("application/json", "multipart/form-data"):
                request = FuzzRequest(
                    "POST", path, "", {"Content-Type": content_type}, b"e\x912/TP)\x06"
                )
                answer = timed_send(client, idp.base_url, request, "app api")
                assert answer.status_code in (400, 422), (path, content_type, answer.status_code)
    assert_no_traceback(idp.server.log()[offset:], "app api")


def _app_key_and_certificate(subject_serial: str) -> tuple[rsa.RSAPrivateKey, bytes]:
    """A key and a self-issued certificate for it (DER) whose subject carries ``subject_serial``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Mallory"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, subject_serial),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(serialization.Encoding.DER)


def _broken_subject(der: bytes, marker: bytes) -> bytes:
    """``der`` with the string tag before ``marker`` (in the subject) made BOOLEAN: the
    certificate still loads (cryptography reads names lazily) but its subject cannot be read."""
    position = der.index(marker) - 2
    assert der[position] in (0x0C, 0x13), der[position]
    return der[:position] + b"\x01" + der[position + 1 :]


def _pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"


def _scanned_order(idp: IdpUnderTest, client: httpx.Client) -> dict:
    """A browser starts an other-device login; the app claims it by the autostart token."""
    login_url, _ = idp.sp.login_url()
    chooser = open_login(client, login_url, idp.base_url)
    href = parse_page(chooser.text).links["method-other-device"]
    page = client.get(idp.base_url + href)
    autostart = parse_page(page.text).links["autostart"]
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(autostart).query)["autostarttoken"][0]
    answer = client.post(f"{idp.base_url}/app-api/v1/scan", json={"autoStartToken": token})
    assert answer.status_code == 200, answer.text
    return answer.json()


CERTIFICATE_CASES = [
    "unreadable subject",
    "X.509 version 4",
    "duplicate extension",
    "not ASCII",
    "empty string",
    "PEM of garbage",
]
# The OIDs of basicConstraints and subjectKeyIdentifier, as DER: same length, so swapping one
# for the other leaves a well-formed certificate with the SKI extension twice.
BASIC_CONSTRAINTS_OID, SKI_OID = b"\x06\x03\x55\x1d\x13", b"\x06\x03\x55\x1d\x0e"
X509_V3 = b"\xa0\x03\x02\x01\x02"  # [0] EXPLICIT INTEGER 2: the version field of a v3 certificate


@pytest.mark.parametrize("case", CERTIFICATE_CASES)
def test_app_api_sign_with_a_malformed_certificate_is_refused(idp: IdpUnderTest, case: str) -> None:
    key, der = _app_key_and_certificate("SE2120001355-E0001")
    certificates = {
        "unreadable subject": [_pem(_broken_subject(der, b"SE2120001355-E0001"))],
        "X.509 version 4": [_pem(der.replace(X509_V3, X509_V3[:-1] + b"\x03", 1))],
        "duplicate extension": [_pem(der.replace(BASIC_CONSTRAINTS_OID, SKI_OID, 1))],
        "not ASCII": [_pem(der).replace("MII", "MÏI", 1)],
        "empty string": [""],
        "PEM of garbage": [_pem(b"\x30\x03\x02\x01\x00")],
    }[case]
    offset = len(idp.server.log())
    with _client(idp.ca_file) as client:
        order = _scanned_order(idp, client)
        data = base64.b64decode(order["dataToSign"])
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        body = {
            "orderRef": order["orderRef"],
            "signToken": order["signToken"],
            "signatureAlgorithm": RSA_PKCS1_SHA256
            if RSA_PKCS1_SHA256 in order["signatureAlgorithms"]
            else order["signatureAlgorithms"][0],
            "signature": base64.b64encode(signature).decode(),
            "certificates": certificates,
        }
        request = FuzzRequest(
            "POST",
            "/app-api/v1/sign",
            "",
            {"Content-Type": "application/json"},
            json.dumps(body).encode(),
        )
        answer = timed_send(client, idp.base_url, request, "app api")
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert_no_traceback(idp.server.log()[offset:], "app api")
