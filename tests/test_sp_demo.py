"""Mock Treserva (``sp_demo``): metadata, users, AuthnRequests, Response checks, pages, CLI.

The IdP here is a real pysaml2 ``Server`` with its own self-signed key (no code from ``idp``),
so what is tested is mock Treserva's handling of genuinely signed (and unsigned) messages.
"""

from __future__ import annotations

import base64
import urllib.parse
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from defusedxml import ElementTree
from fastapi.testclient import TestClient
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_TRANSIENT, NameID
from saml2.server import Server

from sp_demo import saml
from sp_demo.app import create_app
from sp_demo.cli import main as sp_demo_cli
from sp_demo.client_provider import SamlClientProvider
from sp_demo.config import Settings
from sp_demo.db import Database, find_user_by_hsa_id, list_users, seed_demo_users
from sp_demo.idp_metadata import IdpMetadataError, load_idp_metadata, verify_metadata_signature
from tests.helpers.certificates import make_self_signed

SP_BASE = "https://treserva.test"
IDP_BASE = "https://idp.test"
OTHER_SP_BASE = "https://other-sp.test"
IDP_ENTITY_ID = f"{IDP_BASE}/saml/metadata"
MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
ANNA = {
    saml.SAMBI_HSA_ID: ["SE2120001355-E0001"],
    saml.SAMBI_GIVEN_NAME: ["Anna"],
    saml.SAMBI_SURNAME: ["Andersson"],
}


def idp_config(sp_metadata_files: list[Path], key: Path, cert: Path) -> IdPConfig:
    config = IdPConfig()
    config.load(
        {
            "entityid": IDP_ENTITY_ID,
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [
                            (f"{IDP_BASE}/saml/sso/redirect", BINDING_HTTP_REDIRECT),
                            (f"{IDP_BASE}/saml/sso/post", BINDING_HTTP_POST),
                        ]
                    },
                    "name_id_format": [NAMEID_FORMAT_TRANSIENT],
                    "policy": {
                        "default": {
                            "lifetime": {"minutes": 5},
                            "attribute_restrictions": None,
                            "name_form": NAME_FORMAT_URI,
                        }
                    },
                }
            },
            "key_file": str(key),
            "cert_file": str(cert),
            "metadata": {"local": [str(path) for path in sp_metadata_files]},
            "xmlsec_binary": saml.XMLSEC_BINARY,
            "signing_algorithm": saml.SIG_RSA_SHA256,
            "digest_algorithm": saml.DIGEST_SHA256,
            "allow_unknown_attributes": True,
            "delete_tmpfiles": True,
        }
    )
    return config


@dataclass
class TestIdp:
    """A pysaml2 IdP that answers mock Treserva."""

    __test__ = False

    server: Server
    metadata_xml: str
    cert: Path

    def response(
        self,
        in_response_to: str | None,
        *,
        ava: dict[str, list[str]] | None = None,
        class_ref: str = saml.SAMBI_LOA3,
        sign_response: bool = True,
        sign_assertion: bool = True,
        encrypt_assertion: bool = False,
        destination: str = f"{SP_BASE}/saml/acs",
        audience: str = f"{SP_BASE}/saml/metadata",
    ) -> str:
        """A base64 SAML Response as the HTTP-POST binding carries it."""
        response = self.server.create_authn_response(
            ANNA if ava is None else ava,
            in_response_to,
            destination,
            audience,
            name_id=NameID(format=NAMEID_FORMAT_TRANSIENT, text="_transient-4711"),
            authn={"class_ref": class_ref, "authn_auth": IDP_ENTITY_ID},
            sign_response=sign_response,
            sign_assertion=sign_assertion,
            encrypt_assertion=encrypt_assertion,
            sign_alg=saml.SIG_RSA_SHA256,
            digest_alg=saml.DIGEST_SHA256,
        )
        return base64.b64encode(str(response).encode("utf-8")).decode("ascii")


@dataclass
class World:
    settings: Settings
    idp: TestIdp
    other_idp: TestIdp  # same entity ID, different key: an impostor
    sp_cert: Path
    directory: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    directory = tmp_path_factory.mktemp("sp_demo")
    sp_key, sp_cert = make_self_signed(directory / "keys", "treserva")
    idp_key, idp_cert = make_self_signed(directory / "keys", "idp")
    other_key, other_cert = make_self_signed(directory / "keys", "impostor")
    settings = Settings(
        base_url=SP_BASE,
        var_dir=directory / "var",
        sp_key=sp_key,
        sp_cert=sp_cert,
        idp_metadata_file=directory / "idp-metadata.xml",
        session_secret="test-secret-" + "x" * 32,
    )
    sp_metadata_file = directory / "treserva.xml"
    sp_metadata_file.write_text(saml.build_sp_metadata_xml(settings), encoding="utf-8")
    # Another SP the IdP knows, so that a Response meant for it can be made.
    other_sp_metadata_file = directory / "other-sp.xml"
    other_sp = settings.model_copy(
        update={"base_url": OTHER_SP_BASE, "entity_id": f"{OTHER_SP_BASE}/saml/metadata"}
    )
    other_sp_metadata_file.write_text(saml.build_sp_metadata_xml(other_sp), encoding="utf-8")
    metadata_files = [sp_metadata_file, other_sp_metadata_file]

    def make_idp(key: Path, cert: Path) -> TestIdp:
        config = idp_config(metadata_files, key, cert)
        metadata = create_metadata_string(None, config=config, valid=24, sign=True)
        text = metadata.decode("utf-8") if isinstance(metadata, bytes) else metadata
        return TestIdp(Server(config=config), text, cert)

    idp = make_idp(idp_key, idp_cert)
    settings.idp_metadata_file.write_text(idp.metadata_xml, encoding="utf-8")
    return World(settings, idp, make_idp(other_key, other_cert), sp_cert, directory)


@pytest.fixture(scope="module")
def client(world: World):
    return saml.build_client(world.settings, world.idp.metadata_xml)


def request_id_of(location: str) -> str:
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    xml = zlib.decompress(base64.b64decode(query["SAMLRequest"]), -15)
    return ElementTree.fromstring(xml).get("ID")


# --- metadata ---------------------------------------------------------------------------------


def test_metadata_has_acs_signing_cert_and_requested_attributes(world: World) -> None:
    xml = saml.build_sp_metadata_xml(world.settings)
    root = ElementTree.fromstring(xml.encode("utf-8"))
    assert root.get("entityID") == f"{SP_BASE}/saml/metadata"
    sp = root.find(f"{MD}SPSSODescriptor")
    assert sp.get("AuthnRequestsSigned") == "true"
    assert sp.get("WantAssertionsSigned") == "true"

    acs = sp.findall(f"{MD}AssertionConsumerService")
    assert [(a.get("Binding"), a.get("Location")) for a in acs] == [
        (BINDING_HTTP_POST, f"{SP_BASE}/saml/acs")
    ]

    cert_der = x509.load_pem_x509_certificate(world.sp_cert.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    signing = [
        "".join(d.find(f".//{DS}X509Certificate").text.split())
        for d in sp.findall(f"{MD}KeyDescriptor")
        if d.get("use") in (None, "signing")
    ]
    assert signing == [base64.b64encode(cert_der).decode("ascii")]

    requested = sp.findall(f"{MD}AttributeConsumingService/{MD}RequestedAttribute")
    assert {(r.get("Name"), r.get("NameFormat")) for r in requested} == {
        (name, NAME_FORMAT_URI) for name in saml.SAMBI_ATTRIBUTES
    }
    assert [n.text for n in sp.findall(f"{MD}NameIDFormat")] == [NAMEID_FORMAT_TRANSIENT]
    # Only strong algorithms are advertised: every Algorithm named (not the text, where a
    # certificate's base64 may spell "md5" by chance, as a fresh-clone run's key once did).
    algorithms = [element.get("Algorithm") for element in root.iter() if element.get("Algorithm")]
    assert algorithms, "the metadata names no algorithm: nothing to check"
    weak = [name for name in algorithms if "md5" in name.lower() or "sha1" in name.lower()]
    assert weak == [], weak
    display_names = root.findall(".//{urn:oasis:names:tc:SAML:metadata:ui}DisplayName")
    assert "Treserva (demo)" in [d.text for d in display_names]


def test_metadata_is_served_by_the_app(world: World) -> None:
    with TestClient(create_app(world.settings), base_url=SP_BASE) as browser:
        response = browser.get("/saml/metadata")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/samlmetadata+xml")
    assert f"{SP_BASE}/saml/acs" in response.text


# --- users ------------------------------------------------------------------------------------


def test_seed_and_lookup_by_hsa_id() -> None:
    database = Database("sqlite://")
    with database.session() as session:
        added = seed_demo_users(session)
        assert len(added) == 5
    with database.session() as session:
        anna = find_user_by_hsa_id(session, "SE2120001355-E0001")
        assert anna is not None and anna.display_name == "Anna Andersson"
        assert [(p.role, p.unit) for p in anna.permissions] == [
            ("handläggare", "Hemtjänst Centrum"),
            ("handläggare", "Hemtjänst Majorna"),
        ]
        bertil = find_user_by_hsa_id(session, "SE2120001355-E0002")
        assert [(p.role, p.unit) for p in bertil.permissions] == [
            ("undersköterska", "Äldreboende Guldheden")
        ]
        erik_city = find_user_by_hsa_id(session, "SE2120001355-E0005")
        erik_private = find_user_by_hsa_id(session, "SE5567000010-P0001")
        assert erik_city.display_name == erik_private.display_name == "Erik Ek"
        assert [(p.role, p.unit) for p in erik_city.permissions] == [("chef", "Hemtjänst Centrum")]
        assert [(p.role, p.unit) for p in erik_private.permissions] == [
            ("utförare", "Omsorgsbolaget Väst")
        ]
        assert find_user_by_hsa_id(session, "SE2120001355-E9999") is None
        windows_only = [u for u in list_users(session) if u.hsa_id is None]
        assert len(windows_only) == 1 and windows_only[0].windows_account
    with database.session() as session:
        assert seed_demo_users(session) == []  # idempotent
        assert len(list_users(session)) == 5


# --- AuthnRequest -----------------------------------------------------------------------------


def test_start_login_makes_a_signed_redirect_to_the_sso_url_from_idp_metadata(
    world: World, client: Any
) -> None:
    session: dict[str, Any] = {}
    location = saml.start_login(client, session)

    base, _, raw_query = location.partition("?")
    assert base == f"{IDP_BASE}/saml/sso/redirect"
    query = dict(urllib.parse.parse_qsl(raw_query))
    assert query["SigAlg"] == saml.SIG_RSA_SHA256

    # The redirect-binding signature covers the query octets as sent, without Signature.
    signed = "&".join(part for part in raw_query.split("&") if not part.startswith("Signature="))
    sp_public_key = x509.load_pem_x509_certificate(world.sp_cert.read_bytes()).public_key()
    sp_public_key.verify(
        base64.b64decode(query["Signature"]),
        signed.encode("ascii"),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )

    request = ElementTree.fromstring(zlib.decompress(base64.b64decode(query["SAMLRequest"]), -15))
    assert request.get("Destination") == f"{IDP_BASE}/saml/sso/redirect"
    assert request.get("AssertionConsumerServiceURL") == f"{SP_BASE}/saml/acs"
    issuer = request.find("{urn:oasis:names:tc:SAML:2.0:assertion}Issuer")
    assert issuer.text == f"{SP_BASE}/saml/metadata"
    assert list(session[saml.OUTSTANDING_KEY]) == [request.get("ID")]

    # The IdP (pysaml2) accepts it as a request from this SP.
    parsed = world.idp.server.parse_authn_request(query["SAMLRequest"], BINDING_HTTP_REDIRECT)
    assert parsed.message.id == request.get("ID")


def test_outstanding_requests_are_capped(client: Any) -> None:
    session: dict[str, Any] = {}
    ids = [
        request_id_of(saml.start_login(client, session)) for _ in range(saml.MAX_OUTSTANDING + 2)
    ]
    assert set(session[saml.OUTSTANDING_KEY]) == set(ids[-saml.MAX_OUTSTANDING :])


# --- Response ---------------------------------------------------------------------------------


def test_signed_response_logs_in_once(world: World, client: Any) -> None:
    session: dict[str, Any] = {}
    request_id = request_id_of(saml.start_login(client, session))
    response = world.idp.response(request_id)

    result = saml.parse_login_response(client, response, session)

    assert result.hsa_id == "SE2120001355-E0001"
    assert (result.given_name, result.surname) == ("Anna", "Andersson")
    assert result.name_id == "_transient-4711"
    assert result.name_id_format == NAMEID_FORMAT_TRANSIENT
    assert result.authn_context_class_ref == saml.SAMBI_LOA3
    assert result.session_index
    assert result.idp_entity_id == IDP_ENTITY_ID
    assert saml.LoginResult.from_dict(result.to_dict()) == result
    assert session[saml.OUTSTANDING_KEY] == {}

    with pytest.raises(saml.LoginResponseError) as replay:
        saml.parse_login_response(client, response, session)
    assert replay.value.reason == "unsolicited"


def test_an_encrypted_assertion_is_decrypted_and_accepted(world: World, client: Any) -> None:
    session: dict[str, Any] = {}
    request_id = request_id_of(saml.start_login(client, session))
    response = world.idp.response(request_id, encrypt_assertion=True)
    assert b"EncryptedAssertion" in base64.b64decode(response)
    assert saml.parse_login_response(client, response, session).hsa_id == "SE2120001355-E0001"


@pytest.mark.parametrize(
    ("sign_response", "sign_assertion"), [(False, False), (False, True), (True, False)]
)
def test_rejects_a_response_that_is_not_fully_signed(
    world: World, client: Any, sign_response: bool, sign_assertion: bool
) -> None:
    session: dict[str, Any] = {}
    request_id = request_id_of(saml.start_login(client, session))
    response = world.idp.response(
        request_id, sign_response=sign_response, sign_assertion=sign_assertion
    )
    with pytest.raises(saml.LoginResponseError) as refused:
        saml.parse_login_response(client, response, session)
    assert refused.value.reason == "signature"
    assert request_id in session[saml.OUTSTANDING_KEY]  # a bad answer does not use up the request


def test_rejects_a_response_signed_by_another_key(world: World, client: Any) -> None:
    session: dict[str, Any] = {}
    request_id = request_id_of(saml.start_login(client, session))
    with pytest.raises(saml.LoginResponseError) as refused:
        saml.parse_login_response(client, world.other_idp.response(request_id), session)
    assert refused.value.reason == "signature"


def test_rejects_unknown_in_response_to(world: World, client: Any) -> None:
    session: dict[str, Any] = {}
    saml.start_login(client, session)
    for in_response_to in ("id-not-a-request-of-ours", None):
        with pytest.raises(saml.LoginResponseError) as refused:
            saml.parse_login_response(client, world.idp.response(in_response_to), session)
        assert refused.value.reason == "unsolicited"


def test_rejects_a_response_to_another_browsers_request(world: World, client: Any) -> None:
    theirs: dict[str, Any] = {}
    request_id = request_id_of(saml.start_login(client, theirs))
    mine: dict[str, Any] = {}
    saml.start_login(client, mine)
    with pytest.raises(saml.LoginResponseError) as refused:
        saml.parse_login_response(client, world.idp.response(request_id), mine)
    assert refused.value.reason == "unsolicited"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"}, "loa"),
        (
            {"ava": {saml.SAMBI_GIVEN_NAME: ["Anna"], saml.SAMBI_SURNAME: ["Andersson"]}},
            "attributes",
        ),
        ({"audience": f"{OTHER_SP_BASE}/saml/metadata"}, "invalid"),
        ({"destination": f"{OTHER_SP_BASE}/saml/acs"}, "invalid"),
    ],
)
def test_rejects_wrong_content(
    world: World, client: Any, kwargs: dict[str, Any], reason: str
) -> None:
    session: dict[str, Any] = {}
    request_id = request_id_of(saml.start_login(client, session))
    with pytest.raises(saml.LoginResponseError) as refused:
        saml.parse_login_response(client, world.idp.response(request_id, **kwargs), session)
    assert refused.value.reason == reason


@pytest.mark.parametrize("garbage", ["", "bm90IHhtbA==", "%%%not-base64", "<x/>"])
def test_rejects_garbage(client: Any, garbage: str) -> None:
    session: dict[str, Any] = {}
    saml.start_login(client, session)
    with pytest.raises(saml.LoginResponseError):
        saml.parse_login_response(client, garbage, session)


# --- IdP metadata -----------------------------------------------------------------------------


def test_idp_metadata_signature_is_checked_when_a_cert_is_configured(world: World) -> None:
    good = world.idp.metadata_xml
    verify_metadata_signature(good, world.idp.cert)
    with pytest.raises(IdpMetadataError, match="does not verify"):
        verify_metadata_signature(good.replace("/saml/sso/post", "/saml/sso/evil"), world.idp.cert)
    with pytest.raises(IdpMetadataError, match="does not verify"):
        verify_metadata_signature(world.other_idp.metadata_xml, world.idp.cert)
    unsigned = world.directory / "unsigned-idp.xml"
    config = idp_config([world.directory / "treserva.xml"], *make_self_signed(world.directory, "u"))
    unsigned_xml = create_metadata_string(None, config=config, valid=24)
    unsigned.write_bytes(
        unsigned_xml if isinstance(unsigned_xml, bytes) else unsigned_xml.encode("utf-8")
    )
    with pytest.raises(IdpMetadataError, match="not signed"):
        verify_metadata_signature(unsigned.read_text(encoding="utf-8"), world.idp.cert)

    settings = world.settings.model_copy(
        update={"idp_metadata_file": unsigned, "idp_metadata_cert": world.idp.cert}
    )
    with pytest.raises(IdpMetadataError):
        load_idp_metadata(settings)
    settings = world.settings.model_copy(update={"idp_metadata_cert": world.idp.cert})
    assert load_idp_metadata(settings) == good


def test_idp_metadata_must_be_an_entity_descriptor(world: World) -> None:
    bad = world.directory / "not-metadata.xml"
    for text in ("<html/>", '<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', "not xml"):
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(IdpMetadataError):
            load_idp_metadata(world.settings.model_copy(update={"idp_metadata_file": bad}))


def test_client_provider_keeps_the_last_good_metadata(world: World, tmp_path: Path) -> None:
    metadata_file = tmp_path / "idp.xml"
    metadata_file.write_text(world.idp.metadata_xml, encoding="utf-8")
    settings = world.settings.model_copy(
        update={"idp_metadata_file": metadata_file, "idp_metadata_refresh_seconds": 0}
    )
    provider = SamlClientProvider(settings)
    first = provider.get()
    metadata_file.write_text("<broken", encoding="utf-8")
    assert provider.get() is first  # a failed refresh keeps the previous client
    with pytest.raises(IdpMetadataError):
        SamlClientProvider(settings).get()  # but with nothing to fall back on it says so


# --- pages ------------------------------------------------------------------------------------


@pytest.fixture
def browser(world: World, tmp_path: Path) -> Iterator[TestClient]:
    settings = world.settings.model_copy(
        update={"database_url": f"sqlite:///{tmp_path / 'treserva.sqlite3'}"}
    )
    app = create_app(settings)
    with app.state.database.session() as session:
        seed_demo_users(session)
    with TestClient(app, base_url=SP_BASE, follow_redirects=False) as test_client:
        yield test_client


def log_in(browser: TestClient, world: World, **response_kwargs: Any):
    started = browser.get("/login")
    assert started.status_code == 303
    assert started.headers["location"].startswith(f"{IDP_BASE}/saml/sso/redirect?")
    request_id = request_id_of(started.headers["location"])
    return browser.post(
        "/saml/acs",
        data={"SAMLResponse": world.idp.response(request_id, **response_kwargs)},
    )


def test_start_page_is_swedish_first_with_a_plain_login_link(browser: TestClient) -> None:
    page = browser.get("/")
    assert page.status_code == 200
    assert '<html lang="sv">' in page.text
    assert "Treserva (demo)" in page.text
    assert '<a class="button" href="/login" id="login">Logga in' in page.text
    assert '<span lang="en">(Log in)</span>' in page.text
    assert "<script" not in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_login_shows_name_hsa_id_and_permissions(world: World, browser: TestClient) -> None:
    cookie = browser.cookies  # the session cookie must be fit for the IdP's cross-site POST
    answered = log_in(browser, world)
    assert answered.status_code == 303 and answered.headers["location"] == "/me"
    set_cookie = answered.headers["set-cookie"].lower()
    assert "samesite=none" in set_cookie and "secure" in set_cookie and "httponly" in set_cookie
    assert cookie
    page = browser.get("/me")
    assert page.status_code == 200
    assert '<dd id="name">Anna Andersson</dd>' in page.text
    assert '<code id="hsa-id">SE2120001355-E0001</code>' in page.text
    assert "<td>handläggare</td><td>Hemtjänst Centrum</td>" in page.text
    assert "<td>handläggare</td><td>Hemtjänst Majorna</td>" in page.text

    logged_out = browser.get("/logout")
    assert logged_out.status_code == 200 and "Du är utloggad" in logged_out.text
    assert browser.get("/me").headers["location"] == "/"


def test_private_provider_hsa_id_gets_its_own_permissions(world: World, browser: TestClient):
    erik = {
        saml.SAMBI_HSA_ID: ["SE5567000010-P0001"],
        saml.SAMBI_GIVEN_NAME: ["Erik"],
        saml.SAMBI_SURNAME: ["Ek"],
    }
    assert log_in(browser, world, ava=erik).status_code == 303
    page = browser.get("/me")
    assert "<td>utförare</td><td>Omsorgsbolaget Väst</td>" in page.text
    assert "Hemtjänst Centrum" not in page.text


def test_unknown_hsa_id_is_told_to_contact_the_it_contact_person(
    world: World, browser: TestClient
) -> None:
    stranger = {
        saml.SAMBI_HSA_ID: ["SE2120001355-E0999"],
        saml.SAMBI_GIVEN_NAME: ["Gustav"],
        saml.SAMBI_SURNAME: ["Grön"],
    }
    assert log_in(browser, world, ava=stranger).status_code == 303
    page = browser.get("/me")
    assert page.status_code == 403
    assert "IT-kontaktperson" in page.text and "IT contact person" in page.text
    assert "SE2120001355-E0999" in page.text


@pytest.mark.parametrize(
    ("response_kwargs", "reason"),
    [
        ({"sign_response": False, "sign_assertion": False}, "signature"),
        ({"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"}, "loa"),
    ],
)
def test_bad_response_gets_an_error_page(
    world: World, browser: TestClient, response_kwargs: dict[str, Any], reason: str
) -> None:
    page = log_in(browser, world, **response_kwargs)
    assert 400 <= page.status_code < 500
    assert f'<code id="reason">{reason}</code>' in page.text
    assert browser.get("/me").headers["location"] == "/"


@pytest.mark.parametrize(
    "form", [{}, {"SAMLResponse": ""}, {"SAMLResponse": "garbage"}, {"SAMLResponse": "PHg+"}]
)
def test_acs_never_answers_500(browser: TestClient, form: dict[str, str]) -> None:
    page = browser.post("/saml/acs", data=form)
    assert page.status_code == 400
    assert '<code id="reason">' in page.text


def test_acs_reads_one_response_field_only(world: World, browser: TestClient) -> None:
    """A good Response is not accepted beside a second SAMLResponse field, nor as a file, nor
    among more than 16 fields."""
    request_id = request_id_of(browser.get("/login").headers["location"])
    good = world.idp.response(request_id)
    urlencoded = {"content-type": "application/x-www-form-urlencoded"}
    twice = urllib.parse.urlencode([("SAMLResponse", good)] * 2)
    page = browser.post("/saml/acs", content=twice, headers=urlencoded)
    assert page.status_code == 400
    assert '<code id="reason">missing_response</code>' in page.text
    # Starlette's form parser refuses these before the reader sees them (max_files=0,
    # max_fields=16): a bare 400, as for any form it cannot parse.
    as_file = {"SAMLResponse": ("response.xml", base64.b64decode(good))}
    assert browser.post("/saml/acs", files=as_file).status_code == 400
    crowded = urllib.parse.urlencode([("SAMLResponse", good), *[("p", "1")] * 16])
    assert browser.post("/saml/acs", content=crowded, headers=urlencoded).status_code == 400
    assert browser.get("/me").headers["location"] == "/"
    # The same Response alone logs in: the refusals were the form's, not the Response's.
    assert browser.post("/saml/acs", data={"SAMLResponse": good}).status_code == 303


def test_unsolicited_response_is_refused(world: World, browser: TestClient) -> None:
    page = browser.post("/saml/acs", data={"SAMLResponse": world.idp.response("id-unknown")})
    assert page.status_code == 400
    assert '<code id="reason">unsolicited</code>' in page.text


def test_unreachable_idp_gets_an_error_page(world: World, tmp_path: Path) -> None:
    settings = world.settings.model_copy(
        update={
            "idp_metadata_file": None,
            "idp_metadata_url": "https://127.0.0.1:9/saml/metadata",
            "database_url": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        }
    )
    with TestClient(create_app(settings), base_url=SP_BASE, follow_redirects=False) as browser:
        page = browser.get("/login")
        assert page.status_code == 502
        assert '<code id="reason">idp_unavailable</code>' in page.text
        assert browser.get("/").status_code == 200  # the rest of the site works


def test_unknown_page_is_a_friendly_404(browser: TestClient) -> None:
    page = browser.get("/no-such-page")
    assert page.status_code == 404 and "Sidan finns inte" in page.text


# --- CLI --------------------------------------------------------------------------------------


def test_cli_seeds_lists_and_writes_metadata(world: World, tmp_path: Path) -> None:
    env = {
        "SP_DEMO_BASE_URL": SP_BASE,
        "SP_DEMO_VAR_DIR": str(tmp_path),
        "SP_DEMO_SP_KEY": str(world.settings.sp_key),
        "SP_DEMO_SP_CERT": str(world.settings.sp_cert),
    }
    runner = CliRunner()
    seeded = runner.invoke(sp_demo_cli, ["users", "seed"], env=env)
    assert seeded.exit_code == 0, seeded.output
    assert "Added 5 users" in seeded.output
    again = runner.invoke(sp_demo_cli, ["users", "seed"], env=env)
    assert "exist already" in again.output
    listed = runner.invoke(sp_demo_cli, ["users", "list"], env=env)
    assert listed.exit_code == 0
    assert "SE2120001355-E0001" in listed.output and "Hemtjänst Majorna" in listed.output
    assert (tmp_path / "sp_demo.sqlite3").is_file()

    out = tmp_path / "metadata" / "treserva.xml"
    written = runner.invoke(sp_demo_cli, ["metadata", "--out", str(out)], env=env)
    assert written.exit_code == 0, written.output
    assert f"{SP_BASE}/saml/acs" in out.read_text(encoding="utf-8")

    missing = runner.invoke(
        sp_demo_cli, ["metadata"], env={**env, "SP_DEMO_SP_CERT": str(tmp_path / "nope.pem")}
    )
    assert missing.exit_code != 0 and "idp pki init" in missing.output


def test_settings_defaults_are_derived_from_the_base_url_and_var_dir(tmp_path: Path) -> None:
    settings = Settings(base_url="https://sp.example.test:9443/", var_dir=tmp_path)
    assert settings.entity_id == "https://sp.example.test:9443/saml/metadata"
    assert settings.acs_url == "https://sp.example.test:9443/saml/acs"
    assert settings.sp_key == tmp_path / "pki" / "sp" / "treserva.key.pem"
    assert settings.tls_ca_file == tmp_path / "pki" / "tls" / "ca.crt.pem"
    assert settings.database_url == f"sqlite:///{tmp_path / 'sp_demo.sqlite3'}"
    assert settings.idp_metadata_file is None
    secret = settings.session_secret_value()
    assert len(secret) == 64 and Settings(var_dir=tmp_path).session_secret_value() == secret
