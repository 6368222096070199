"""aor_of / request_aor (RFC 3261 §10.3 step 5), uri_equal (§19.1.4) and RegistrarConfig.from_dict."""

from __future__ import annotations

import fastsip
import pytest

from proxyapp.config import ConfigError
from proxyapp.registrar import RegistrarConfig, aor_of, request_aor, uri_equal

from ..proxy import layers
from .support import register


@pytest.mark.parametrize(
    "uri, aor",
    [
        ("sip:alice@example.com", "sip:alice@example.com"),
        ("sip:Alice@Example.COM:5070;user=phone;transport=tcp?Subject=x", "sip:Alice@example.com:5070"),
        ("SIPS:bob@EXAMPLE.com", "sips:bob@example.com"),
        ("sip:alice:secret@example.com", "sip:alice@example.com"),
        ("sip:%61lice@example.com", "sip:alice@example.com"),  # needless escape decoded (step 5)
        ("sip:a%40b@example.com", "sip:a%40b@example.com"),  # '@' must stay escaped
        ("sip:a%3ab%2fc@example.com", "sip:a%3Ab/c@example.com"),  # ':' stays escaped, hex upper
        ("sip:+15551234567;npdi@example.com;user=phone", "sip:+15551234567;npdi@example.com"),
        ("sip:alice@[2001:DB8::1]", "sip:alice@[2001:db8::1]"),
        ("sip:example.com", "sip:example.com"),
    ],
)
def test_aor_of_canonical_form(uri, aor):
    assert aor_of(uri) == aor
    assert aor_of(fastsip.parse_uri(uri)) == aor


@pytest.mark.parametrize("uri", ["tel:+15551234567", "urn:service:sos", "mailto:alice@example.com"])
def test_aor_of_rejects_what_is_not_sip(uri):
    with pytest.raises(ValueError, match="SIP or SIPS"):
        aor_of(uri)


def test_aor_of_rejects_text_that_is_not_a_uri():
    with pytest.raises(fastsip.URIError):
        aor_of("not a uri")


def test_request_aor_never_raises():
    assert request_aor(register(to="<sip:Alice@EXAMPLE.com>")) == "sip:Alice@example.com"
    assert request_aor(register(to="<tel:+1555>")) is None
    assert request_aor(register(to="<sip:alice@>")) is None
    raw = b"\r\n".join(ln for ln in register().to_bytes().split(b"\r\n") if not ln.startswith(b"To:"))
    assert request_aor(fastsip.parse(raw)) is None


# RFC 3261 §19.1.4, its own examples first.
EQUAL = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
     "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
    ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
     "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
    ("sip:alice@atlanta.com;lr", "sip:alice@atlanta.com"),
    ("tel:+15551234567", "TEL:+15551234567"),
]
NOT_EQUAL = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),  # user case
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    ("sip:carol@chicago.com;maddr=192.0.2.1", "sip:carol@chicago.com"),
    ("sip:carol@chicago.com;user=phone", "sip:carol@chicago.com"),
    ("sip:carol@chicago.com;method=INVITE", "sip:carol@chicago.com"),
    ("sip:carol@chicago.com;ttl=1", "sip:carol@chicago.com"),
    ("sip:alice:pw@atlanta.com", "sip:alice@atlanta.com"),
    ("sip:alice@atlanta.com", "sip:atlanta.com"),
    ("tel:+15551234567", "sip:+15551234567@atlanta.com"),
    ("tel:+15551234567", "tel:+15551234568"),
]


@pytest.mark.parametrize("a, b", EQUAL)
def test_uri_equal(a, b):
    assert uri_equal(a, b) and uri_equal(b, a)
    assert uri_equal(fastsip.parse_uri(a), b)


@pytest.mark.parametrize("a, b", NOT_EQUAL)
def test_uri_not_equal(a, b):
    assert not uri_equal(a, b) and not uri_equal(b, a)


def test_text_that_is_not_a_uri_equals_only_itself():
    assert uri_equal("<<junk", "<<junk") and not uri_equal("<<junk", "sip:a@b")


# ---------------------------------------------------------------------------------------------
# RegistrarConfig
# ---------------------------------------------------------------------------------------------


def test_defaults():
    assert RegistrarConfig() == RegistrarConfig.from_dict({})
    cfg = RegistrarConfig()
    assert (cfg.domains, cfg.min_expires, cfg.max_expires, cfg.default_expires, cfg.max_contacts) == ((), 60, 3600, 3600, 0)
    assert (cfg.cseq_delay, cfg.path_mode) == (20.0, "lazy")


def test_from_dict_full_table():
    cfg = RegistrarConfig.from_dict({
        "domains": ["Example.COM", "example.com", " voip.example.net "], "min_expires": 0, "max_expires": 7200,
        "default_expires": 1800, "max_contacts": 5, "cseq_delay": 5, "path_mode": "strict",
    })
    assert cfg == RegistrarConfig(("example.com", "voip.example.net"), 0, 7200, 1800, 5, 5.0, "strict")


def test_a_single_domain_string_is_a_list_of_one():
    assert RegistrarConfig.from_dict({"domains": "Example.com"}).domains == ("example.com",)


@pytest.mark.parametrize(
    "table, key",
    [
        ({"domain": ["example.com"]}, "registrar.domain"),
        ({"domains": [1]}, "registrar.domains"),
        ({"domains": [""]}, "registrar.domains"),
        ({"min_expires": -1}, "registrar.min_expires"),
        ({"min_expires": True}, "registrar.min_expires"),
        ({"max_expires": "3600"}, "registrar.max_expires"),
        ({"max_contacts": 1.5}, "registrar.max_contacts"),
        ({"default_expires": 0}, "registrar.default_expires"),
        ({"default_expires": 2**32}, "registrar.default_expires"),
        ({"cseq_delay": -1}, "registrar.cseq_delay"),
        ({"cseq_delay": "20"}, "registrar.cseq_delay"),
        ({"path_mode": "always"}, "registrar.path_mode"),
        ({"min_expires": 4000, "max_expires": 3600}, "registrar.min_expires"),
        ({"min_expires": 600, "default_expires": 300}, "registrar.default_expires"),
    ],
)
def test_from_dict_names_the_bad_key(table, key):
    with pytest.raises(ConfigError) as info:
        RegistrarConfig.from_dict(table)
    assert info.value.key == key and isinstance(info.value, ValueError)


def test_from_dict_wants_a_table():
    with pytest.raises(ConfigError, match="registrar: expected a table"):
        RegistrarConfig.from_dict(["min_expires"])  # type: ignore[arg-type]


def test_the_registrar_imports_only_fastsip_the_config_and_the_binding_record():
    # A service (src/proxyapp/__init__.py layer 4): nothing of the core, script, proxy or edge.
    g = layers.graph()
    mine = {m for m in g if m == "proxyapp.registrar" or m.startswith("proxyapp.registrar.")}
    assert mine >= {"proxyapp.registrar", "proxyapp.registrar._rules"}
    outside = {t for m in mine for t in g[m] if t not in mine}
    assert outside <= {"proxyapp.config", "proxyapp.location.binding"}, outside
