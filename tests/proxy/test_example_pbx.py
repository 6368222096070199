"""examples/pbx.toml and pbx_script.py: phones, their registrar, and one trunk, driven sans-IO."""

from __future__ import annotations

from pathlib import Path

import fastsip
import pytest

from proxyapp.config import Config
from proxyapp.proxy import Proxy, Target
from proxyapp.script import Script

from .harness import sends

ROOT = Path(__file__).resolve().parents[2]
PBX = "127.0.0.1"
TRUNK = ("127.0.0.2", 5060)
ALICE = ("127.0.0.1", 6001)
BOB = ("127.0.0.1", 6002)


@pytest.fixture
def pbx():
    cfg = Config.load(ROOT / "examples" / "pbx.toml")
    cfg.location = {"backend": "memory"}
    proxy = Proxy(cfg, Script.load(cfg.script), branch_salt="abc")
    udp = cfg.listen[0]

    def rx(data, src):
        return sends(proxy.receive(data, Target("udp", src[0], src[1], None, udp)))

    return rx


def register(user, contact):
    return (
        f"REGISTER sip:pbx.example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {contact[0]}:{contact[1]};branch=z9hG4bKreg{user};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{user}@pbx.example.com>;tag=f{user}\r\nTo: <sip:{user}@pbx.example.com>\r\n"
        f"Call-ID: reg-{user}\r\nCSeq: 1 REGISTER\r\n"
        f"Contact: <sip:{user}@{contact[0]}:{contact[1]}>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def invite(ruri, frm, src, branch):
    return (
        f"INVITE {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {src[0]}:{src[1]};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <{frm}>;tag=t{branch}\r\nTo: <{ruri}>\r\n"
        f"Call-ID: {branch}@test\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_phones_register_and_call_each_other_by_name(pbx):
    ok = fastsip.parse(pbx(register("alice", ALICE), ALICE)[0].data)
    assert ok.status == 200 and ok.headers.getall("Contact") == [f"<sip:alice@{ALICE[0]}:{ALICE[1]}>;expires=600"]
    pbx(register("bob", BOB), BOB)
    s = pbx(invite("sip:bob@pbx.example.com", "sip:alice@pbx.example.com", ALICE, "z9hG4bKa1"), ALICE)
    assert s[1].dest.addr == BOB
    assert fastsip.parse(s[1].data).raw_uri == f"sip:bob@{BOB[0]}:{BOB[1]}"


def test_a_number_goes_out_through_the_trunk_for_a_registered_phone_only(pbx):
    pbx(register("alice", ALICE), ALICE)
    s = pbx(invite("sip:+15557654321@pbx.example.com", "sip:alice@pbx.example.com", ALICE, "z9hG4bKa2"), ALICE)
    assert s[1].dest.addr == ("127.0.0.1", 5090)
    s = pbx(invite("sip:15557654321@pbx.example.com", "sip:mallory@pbx.example.com", ("127.0.0.9", 5060),
                   "z9hG4bKm1"), ("127.0.0.9", 5060))
    assert fastsip.parse(s[0].data).status == 403


def test_a_call_from_the_trunk_rings_the_phone_of_its_did_or_the_operator(pbx):
    pbx(register("alice", ALICE), ALICE)
    pbx(register("bob", BOB), BOB)
    s = pbx(invite(f"sip:15551230002@{PBX}", "sip:+15550000000@carrier.example", TRUNK, "z9hG4bKt1"), TRUNK)
    assert s[1].dest.addr == BOB
    s = pbx(invite(f"sip:15551239999@{PBX}", "sip:+15550000000@carrier.example", TRUNK, "z9hG4bKt2"), TRUNK)
    assert s[1].dest.addr == ALICE  # unknown DID: the operator


def test_an_unregistered_phone_is_not_found_and_the_trunk_may_not_register(pbx):
    s = pbx(invite("sip:carol@pbx.example.com", "sip:alice@pbx.example.com", ALICE, "z9hG4bKa3"), ALICE)
    assert fastsip.parse(s[0].data).status == 404
    s = pbx(register("carrier", TRUNK), TRUNK)
    assert fastsip.parse(s[0].data).status == 403
