"""Step 6 over real sockets: the portal as a real server, the recipient's card software
talking HTTPS to it and PKCS#11 to a SoftHSM2 card, the card's certificate checked by the IdP's
SITHS validation (with the session's OCSP responder), the Göteborg certificate issued by the
test PKI's HSA-id CA onto the same card, and the IdP's directory told (its real CLI)."""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from sqlalchemy import update

from idp.siths.trust import load_siths_trust
from idp.siths.validation import SithsValidator
from portal import audit, card_client, orders
from portal.config import today
from portal.models import ISSUED, Order
from portal.orders import OrderInput
from siths_testkit.app_simulator import SoftHsmCard
from siths_testkit.pki.tokens import token_objects
from tests.conftest import IdpUnderTest
from tests.helpers.support import tls_context
from tests.helpers.token_cards import PIN, TokenLab
from tests.portal.portal_server import PortalUnderTest, running_portal

PROVIDER = "5567000010"
IT = "SE5567000010-P0001"
EKU = "SE2120001355-E0005"


@pytest.fixture(scope="module")
def portal(
    idp: IdpUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PortalUnderTest]:
    with running_portal(idp, tmp_path_factory.mktemp("portal-enrol"), series="T") as running:
        yield running


@pytest.fixture(scope="module")
def lab(idp: IdpUnderTest, tmp_path_factory: pytest.TempPathFactory) -> TokenLab:
    return TokenLab(idp.pki, tmp_path_factory.mktemp("portal-cards"))


class People:
    """Invented employees of the private provider, each with a card and a directory entry."""

    def __init__(self, idp: IdpUnderTest, lab: TokenLab) -> None:
        self.idp, self.lab, self.count = idp, lab, 40

    def card(
        self,
        given: str,
        surname: str,
        *,
        not_after: dt.datetime | None = None,
        in_directory: bool = False,
    ) -> tuple[str, str]:
        """(card number, HSA-ID at the provider) of a new card for a new person; the IdP's
        directory learns of the person only if ``in_directory`` (the refusals never get that
        far)."""
        self.count += 1
        hsa_id = f"SE{PROVIDER}-P{self.count:04d}"
        card_number = f"9752{self.count + 500:015d}"
        self.lab.card(card_number, hsa_id, given, surname, not_after=not_after)
        if not in_directory:
            return card_number, hsa_id
        added = self.idp.idp_cli(
            "people",
            "add",
            "--hsa-id",
            hsa_id,
            "--given-name",
            given,
            "--surname",
            surname,
            "--organisation",
            "Omsorgsbolaget Väst AB",
        )
        assert added.returncode == 0, added.stderr
        return card_number, hsa_id


@pytest.fixture(scope="module")
def people(idp: IdpUnderTest, lab: TokenLab) -> People:
    return People(idp, lab)


def order_and_link(
    portal: PortalUnderTest, card_number: str, given: str, surname: str, days: int = 365
) -> tuple[int, str]:
    """Steps 1-5 at the core; the link is read from the mail the SMTP sink received."""
    address = f"{given}.{surname}.{card_number[-4:]}@omsorgvast.example.invalid".lower()
    with portal.database.session() as session:
        order = orders.place_order(
            session,
            OrderInput(
                "Inera AB",
                card_number,
                (today() + dt.timedelta(days=days)).isoformat(),
                given,
                surname,
                address,
            ),
            PROVIDER,
            IT,
        )
        order = orders.register_case(session, order.id, order.version, EKU)
        order = orders.confirm_order(
            session, order.id, order.version, EKU, portal.settings.hsa_id_series
        )
        order = orders.forward_order(session, portal.settings, order.id, order.version, EKU)
    mail = portal.sink.wait_for(address)[0]
    link = re.search(r"https://\S+/hamta/\S+", mail.get_content()).group(0)
    return order.id, link


def enrol(lab: TokenLab, link: str, card_number: str) -> card_client.Enrolled:
    return card_client.enrol(
        link, token_label=card_number, pin=PIN, config=lab.config, ca_file=lab.pki.tls_ca_cert
    )


def test_certificate_is_issued_onto_the_same_card(
    idp: IdpUnderTest, portal: PortalUnderTest, lab: TokenLab, people: People
) -> None:
    card_number, own_hsa_id = people.card("Fatima", "Fors", in_directory=True)
    order_id, link = order_and_link(portal, card_number, "Fatima", "Fors")
    page = httpx.get(link, verify=tls_context(idp.ca_file))
    assert page.status_code == 200 and card_number in page.text
    enrolled = enrol(lab, link, card_number)
    with portal.database.session() as session:
        order = session.get(Order, order_id)
        actions = [e.action for e in audit.events_for(session, order_id)]
    assert order.state == ISSUED and order.link_used_at is not None
    assert enrolled.hsa_id == order.hsa_id and order.card_hsa_id == own_hsa_id
    assert "certificate_issued" in actions and "idp_directory_added" in actions
    # The card now carries two organisations' certificates, each with its own key on the card.
    objects = token_objects(lab.config, card_number, PIN)
    certificates = sorted(o.label for o in objects if o.kind == "certificate")
    assert certificates == sorted([own_hsa_id, order.hsa_id])
    new_key = next(o for o in objects if o.kind == "private_key" and o.label == order.hsa_id)
    assert new_key.sensitive and not new_key.extractable and not new_key.secret_readable
    # The new certificate is a good Göteborg SITHS card certificate.
    card = SoftHsmCard(card_number, PIN, config=lab.config, hsa_id=order.hsa_id)
    subject = card.certificate().subject
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Göteborgs Stad"
    trust = load_siths_trust(
        idp.pki.directory / "siths" / "trust-anchors.pem",
        idp.pki.directory / "siths" / "intermediates.pem",
    )
    validated = SithsValidator(trust, ["2120001355"]).validate(card.certificate())
    assert validated.hsa_id.value == order.hsa_id
    assert card.certificate().not_valid_after_utc.date() == order.valid_to
    # The IdP's directory has the new HSA-ID, for the same person.
    listed = idp.idp_cli("people", "list").stdout
    assert re.search(rf"^{order.hsa_id}\tFatima Fors\t.*\tGöteborgs Stad\t", listed, re.M)
    # The link works once.
    again = httpx.get(link, verify=tls_context(idp.ca_file))
    assert again.status_code == 410 and '<code id="reason">link_used</code>' in again.text
    with pytest.raises(card_client.EnrolmentRefused) as refused:
        enrol(lab, link, card_number)
    assert refused.value.reason == "link_used"


def objects_on(lab: TokenLab, card_number: str) -> int:
    return len(token_objects(lab.config, card_number, PIN))


def test_expired_and_unknown_links(
    idp: IdpUnderTest, portal: PortalUnderTest, lab: TokenLab, people: People
) -> None:
    card_number, _ = people.card("Gustav", "Gran")
    order_id, link = order_and_link(portal, card_number, "Gustav", "Gran")
    with portal.database.session() as session:
        session.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(link_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
        )
    before = objects_on(lab, card_number)
    with pytest.raises(card_client.EnrolmentRefused) as refused:
        enrol(lab, link, card_number)
    assert (refused.value.status_code, refused.value.reason) == (410, "link_expired")
    assert objects_on(lab, card_number) == before
    unknown = httpx.get(link[:-4] + "AAAA", verify=tls_context(idp.ca_file))
    assert unknown.status_code == 404 and "link_unknown" in unknown.text
    # What the card software sends is read with care: not JSON, fields missing, too large.
    with httpx.Client(verify=tls_context(idp.ca_file)) as http:
        for body, status, reason in (
            (b"not json", 400, "bad_request"),
            (b'{"challenge": "x"}', 400, "bad_request"),
            (b'{"signature": "' + b"A" * 70_000 + b'"}', 413, "upload_too_large"),
        ):
            answer = http.post(f"{link}/certifikat", content=body)
            assert (answer.status_code, answer.json()["reason"]) == (status, reason)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("other_person", "card_mismatch"),
        ("wrong_card_number", "card_mismatch"),
        ("forged", "card_certificate_refused"),
        ("signature_by_other_card", "card_not_proved"),
        ("already_goteborg", "card_has_goteborg"),
        ("expires_first", "card_expires_first"),
        ("new_key_signature_wrong", "new_key_not_proved"),
    ],
)
def test_a_card_that_does_not_prove_possession_is_refused(
    idp: IdpUnderTest,
    portal: PortalUnderTest,
    lab: TokenLab,
    people: People,
    case: str,
    reason: str,
) -> None:
    given, surname = "Hanna", f"Holm{case.replace('_', '')[:10]}"
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    card_number, _ = people.card(
        given, surname, not_after=soon if case == "expires_first" else None
    )
    order_id, link = order_and_link(portal, card_number, given, surname)
    if case == "other_person":
        card_number, _ = people.card("Ivar", "Ivarsson")
    token = link.rsplit("/", 1)[1]
    card = SoftHsmCard(card_number, PIN, config=lab.config)
    # A second card stands in for a key that is not the one claimed.
    stranger = None
    if case in ("signature_by_other_card", "new_key_signature_wrong", "forged"):
        stranger_number, _ = people.card("Jon", f"Jonsson{case[:6]}")
        stranger = SoftHsmCard(stranger_number, PIN, config=lab.config)
    with httpx.Client(verify=tls_context(idp.ca_file)) as http:
        challenge = http.post(f"{link}/utmaning").json()
        data = base64.b64decode(challenge["dataToSign"])
        certificate = card.certificate_pem()
        algorithm, signature = card.sign(data)
        new_key_card = stranger or card
        new_algorithm, new_signature = new_key_card.sign(data)
        if case == "signature_by_other_card":
            algorithm, signature = stranger.sign(data)
        elif case == "new_key_signature_wrong":
            new_algorithm, new_signature = stranger.sign(b"other bytes")
        elif case == "forged":
            # Same name and organisation, but from the forged CA (same CA name, other key).
            forged = lab.card(
                f"9752{900 + people.count:015d}",
                f"SE{PROVIDER}-F{people.count:04d}",
                given,
                surname,
                forged=True,
            )
            certificate = forged.certificate_pem()
            algorithm, signature = forged.sign(data)
        public_key = (
            new_key_card.certificate()
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        body = {
            "challenge": challenge["challenge"],
            "cardNumber": "9752999999999999999"
            if case == "wrong_card_number"
            else challenge["cardNumber"],
            "certificate": certificate,
            "algorithm": algorithm,
            "signature": base64.b64encode(signature).decode(),
            "cardHsaIds": ["SE2120001355-E0777"] if case == "already_goteborg" else [],
            "publicKey": public_key,
            "newKeyAlgorithm": new_algorithm,
            "newKeySignature": base64.b64encode(new_signature).decode(),
        }
        answer = http.post(f"{link}/certifikat", json=body)
        assert answer.status_code in (403, 409), answer.text
        assert answer.json()["reason"] == reason, answer.text
        assert answer.json()["sv"] and answer.json()["en"]
        # The challenge was spent: the same body again is refused for that.
        again = http.post(f"{link}/certifikat", json=body)
        assert again.json()["reason"] == "no_challenge"
    with portal.database.session() as session:
        order = session.get(Order, order_id)
        refusals = [
            e.detail
            for e in audit.events_for(session, order_id)
            if e.action == "certificate_refused"
        ]
    assert order.state == "forwarded" and order.link_used_at is None
    assert refusals[0].startswith(reason)
    assert token not in " ".join(refusals)


def test_a_refused_card_keeps_nothing_of_the_attempt(
    portal: PortalUnderTest, lab: TokenLab, people: People
) -> None:
    """The card software made the new key pair before the portal said no: it is removed."""
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=20)
    card_number, _ = people.card("Lisa", "Lind", not_after=soon)
    _order_id, link = order_and_link(portal, card_number, "Lisa", "Lind")
    before = sorted((o.kind, o.label) for o in token_objects(lab.config, card_number, PIN))
    with pytest.raises(card_client.EnrolmentRefused) as refused:
        enrol(lab, link, card_number)
    assert (refused.value.status_code, refused.value.reason) == (409, "card_expires_first")
    after = sorted((o.kind, o.label) for o in token_objects(lab.config, card_number, PIN))
    assert after == before
