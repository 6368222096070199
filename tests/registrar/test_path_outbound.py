"""Path (RFC 3327 §5.3) and outbound flows (RFC 5626 §6): what is stored, what the 200 says."""

from __future__ import annotations

import dataclasses

from proxyapp.registrar import RegisterOutcome

from .support import AOR, CFG, DATE, binding, fresh, register, run

PHONE = "sip:alice@192.0.2.10:5062;transport=tcp"
INSTANCE = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"
OB = f'+sip.instance="{INSTANCE}";reg-id=1'
P1 = "<sip:p1.example.net;lr>"
P2 = "<sip:p2.example.net;lr>"
P1_OB = "<sip:p1.example.net;lr;ob>"


def failed(status: int, reason: str, headers: list[tuple[str, str]] | None = None) -> RegisterOutcome:
    return RegisterOutcome(status, reason, headers or [], None, AOR)


# ---------------------------------------------------------------------------------------------
# Path (RFC 3327 §5.3)
# ---------------------------------------------------------------------------------------------


def test_path_values_are_stored_in_order_across_headers_and_echoed_to_a_ua_that_supports_path():
    out = run(register([f"<{PHONE}>"], vias=3, path=[P1, f"{P2}, <sip:p3.example.net;lr>"], supported="path"))
    path = (P1, P2, "<sip:p3.example.net;lr>")
    assert out == RegisterOutcome(
        200, "OK",
        [("Contact", f"<{PHONE}>;expires=3600")] + [("Path", p) for p in path] + [("Date", DATE)],
        [fresh(PHONE, path=path)], AOR,
    )


def test_path_is_stored_but_not_echoed_without_supported_path():
    out = run(register([f"<{PHONE}>"], vias=2, path=[P1]))
    assert out.headers == [("Contact", f"<{PHONE}>;expires=3600"), ("Date", DATE)]
    assert out.bindings[0].path == (P1,)


def test_path_mode_off_never_echoes():
    out = run(register([f"<{PHONE}>"], vias=2, path=[P1], supported="path"), cfg=dataclasses.replace(CFG, path_mode="off"))
    assert [h for h in out.headers if h[0] == "Path"] == [] and out.bindings[0].path == (P1,)


def test_path_mode_strict_rejects_path_the_ua_does_not_support():
    cfg = dataclasses.replace(CFG, path_mode="strict")
    out = run(register([f"<{PHONE}>"], vias=2, path=[P1], supported="timer"), cfg=cfg)
    assert out == failed(421, "Extension Required", [("Require", "path")])
    assert run(register([f"<{PHONE}>"], vias=2, path=[P1], supported="timer, path"), cfg=cfg).status == 200


def test_a_refresh_replaces_the_path_and_other_bindings_keep_theirs():
    other = binding("sip:alice@198.51.100.7", call_id="x", path=("<sip:old.example.net;lr>",))
    out = run(register([f"<{PHONE}>"], vias=2, path=[P2]), [other])
    assert [b.path for b in out.bindings] == [("<sip:old.example.net;lr>",), (P2,)]


def test_a_query_does_not_echo_path():
    out = run(register([], vias=2, path=[P1], supported="path"), [binding(PHONE)])
    assert out.headers == [("Contact", f"<{PHONE}>;expires=3600"), ("Date", DATE)] and out.bindings is None


# ---------------------------------------------------------------------------------------------
# Outbound flows (RFC 5626 §6)
# ---------------------------------------------------------------------------------------------


def test_a_flow_registration_at_the_first_hop_is_stored_with_reg_id_and_answered_require_outbound():
    out = run(register([f"<{PHONE}>;{OB}"], supported="path, outbound"))
    assert out == RegisterOutcome(
        200, "OK",
        [("Contact", f'<{PHONE}>;expires=3600;+sip.instance="{INSTANCE}";reg-id=1'),
         ("Require", "outbound"), ("Date", DATE)],
        [fresh(PHONE, instance=INSTANCE, reg_id=1)], AOR,
    )


def test_the_same_instance_and_reg_id_replaces_the_flow_whatever_the_contact_and_call_id():
    old = binding(PHONE, call_id="before-reboot", cseq=77, instance=INSTANCE, reg_id=1)
    new_uri = "sip:alice@203.0.113.50:40000;transport=tcp"
    out = run(register([f"<{new_uri}>;{OB}"], call_id="after-reboot", cseq=1, supported="outbound"), [old])
    assert out.bindings == [fresh(new_uri, call_id="after-reboot", cseq=1, instance=INSTANCE, reg_id=1)]


def test_another_reg_id_of_the_same_instance_is_a_second_flow():
    first = binding(PHONE, instance=INSTANCE, reg_id=1)
    out = run(register([f'<{PHONE}>;+sip.instance="{INSTANCE}";reg-id=2'], cseq=2, supported="outbound"), [first])
    assert [(b.instance, b.reg_id) for b in out.bindings] == [(INSTANCE, 1), (INSTANCE, 2)]
    assert [h[1] for h in out.headers if h[0] == "Contact"] == [
        f'<{PHONE}>;expires=3600;+sip.instance="{INSTANCE}";reg-id=1',
        f'<{PHONE}>;expires=3600;+sip.instance="{INSTANCE}";reg-id=2',
    ]


def test_a_flow_obeys_the_cseq_rule_of_its_call_id():
    old = binding(PHONE, cseq=10, instance=INSTANCE, reg_id=1)
    out = run(register([f"<sip:alice@203.0.113.50>;{OB}"], cseq=9, supported="outbound"), [old])
    assert out == failed(400, "Bad Request - out-of-order CSeq")


def test_a_flow_and_a_plain_binding_with_the_same_uri_are_different_bindings():
    plain = binding(PHONE)
    out = run(register([f"<{PHONE}>;{OB}"], cseq=2, supported="outbound"), [plain])
    assert [(b.contact, b.reg_id) for b in out.bindings] == [(PHONE, None), (PHONE, 1)]


def test_a_flow_is_removed_by_instance_and_reg_id_with_expires_zero():
    old = binding(PHONE, instance=INSTANCE, reg_id=1)
    out = run(register([f"<sip:alice@203.0.113.50>;{OB};expires=0"], cseq=2, supported="outbound"), [old])
    assert out.bindings == [] and ("Require", "outbound") in out.headers


def test_an_instance_without_reg_id_is_keyed_by_the_instance():
    old = binding(PHONE, instance=INSTANCE)
    out = run(register([f'<sip:alice@203.0.113.50>;+sip.instance="{INSTANCE}"'], cseq=2), [old])
    assert out.bindings == [fresh("sip:alice@203.0.113.50", cseq=2, instance=INSTANCE)]
    assert ("Require", "outbound") not in out.headers
    assert out.headers[0] == ("Contact", f'<sip:alice@203.0.113.50>;expires=3600;+sip.instance="{INSTANCE}"')


def test_a_reg_id_without_instance_is_ignored():
    out = run(register([f"<{PHONE}>;reg-id=1"], supported="outbound"))
    assert out.bindings == [fresh(PHONE)] and ("Require", "outbound") not in out.headers


def test_not_the_first_hop_and_no_ob_path_with_supported_outbound_is_439():
    out = run(register([f"<{PHONE}>;{OB}"], vias=2, path=[P1], supported="path, outbound"))
    assert out == failed(439, "First Hop Lacks Outbound Support")
    out = run(register([f"<{PHONE}>;{OB}"], vias=2, supported="outbound"))
    assert out == failed(439, "First Hop Lacks Outbound Support")


def test_not_the_first_hop_without_supported_outbound_ignores_the_reg_id():
    out = run(register([f"<{PHONE}>;{OB}"], vias=2, path=[P1]))
    assert out.bindings == [fresh(PHONE, instance=INSTANCE, path=(P1,))]
    assert ("Require", "outbound") not in out.headers


def test_an_edge_proxy_with_ob_in_its_path_makes_outbound_work_past_the_first_hop():
    out = run(register([f"<{PHONE}>;{OB}"], vias=2, path=[P1_OB, P2], supported="path, outbound"))
    assert out.bindings == [fresh(PHONE, instance=INSTANCE, reg_id=1, path=(P1_OB, P2))]
    assert out.headers[1:] == [("Path", P1_OB), ("Path", P2), ("Require", "outbound"), ("Date", DATE)]


def test_only_the_top_path_uri_counts_for_ob():
    out = run(register([f"<{PHONE}>;{OB}"], vias=3, path=[P1, P1_OB], supported="outbound"))
    assert out.status == 439


def test_a_reg_id_with_several_non_zero_contacts_is_400():
    out = run(register([f"<{PHONE}>;{OB}", "<sip:alice@198.51.100.7>"], supported="outbound"))
    assert out == failed(400, "Bad Request - reg-id with more than one Contact")


def test_a_flow_registration_may_remove_other_contacts_at_once():
    stale = binding("sip:alice@198.51.100.7")
    out = run(register([f"<{PHONE}>;{OB}", "<sip:alice@198.51.100.7>;expires=0"], cseq=2, supported="outbound"), [stale])
    assert out.bindings == [fresh(PHONE, cseq=2, instance=INSTANCE, reg_id=1)]


def test_malformed_instance_or_reg_id_is_400():
    for params, what in [
        ('+sip.instance=""', "+sip.instance"), ("+sip.instance", "+sip.instance"),
        (f'+sip.instance="{INSTANCE}";reg-id=0', "reg-id"),
        (f'+sip.instance="{INSTANCE}";reg-id=2147483648', "reg-id"),
        (f'+sip.instance="{INSTANCE}";reg-id=x', "reg-id"),
    ]:
        assert run(register([f"<{PHONE}>;{params}"])) == failed(400, f"Bad Request - invalid {what}"), params
