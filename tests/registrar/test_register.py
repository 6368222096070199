"""process_register, rule by rule: the exact status, reason, headers and stored bindings (RFC 3261 §10.3)."""

from __future__ import annotations

import dataclasses

import fastsip
import pytest

from proxyapp.registrar import RegisterOutcome, RegistrarConfig, contact_header_values

from .support import AOR, CFG, DATE, NOW, binding, fresh, register, run

PHONE = "sip:alice@192.0.2.10:5062"
DESK = "sip:alice@198.51.100.7"


def ok(contacts: list[str], bindings: list | None, extra: list[tuple[str, str]] | None = None) -> RegisterOutcome:
    headers = [("Contact", c) for c in contacts] + (extra or []) + [("Date", DATE)]
    return RegisterOutcome(200, "OK", headers, bindings, AOR)


def failed(status: int, reason: str, headers: list[tuple[str, str]] | None = None, aor: str | None = AOR) -> RegisterOutcome:
    return RegisterOutcome(status, reason, headers or [], None, aor)


# ---------------------------------------------------------------------------------------------
# §10.3 step 7-8: adding, refreshing, removing; the 200 lists every binding with its expires
# ---------------------------------------------------------------------------------------------


def test_a_first_registration_is_stored_and_listed_with_date():
    out = run(register([f"<{PHONE}>"], expires="600", user_agent="Phone/1.0"))
    assert out == ok([f"<{PHONE}>;expires=600"], [fresh(granted=600, user_agent="Phone/1.0")])


def test_the_binding_records_the_flow_of_this_register():
    conn = object()
    out = run(register(), conn=conn)
    (b,) = out.bindings
    assert (b.source_transport, b.source_host, b.source_port) == ("udp", "192.0.2.10", 5062)
    assert (b.socket, b.node, b.last_modified) == ("udp:127.0.0.1:5060", "sip:127.0.0.1:5060", NOW)
    assert b.conn is conn and b.aor == AOR


def test_the_expires_param_wins_over_the_expires_header_which_wins_over_the_default():
    cfg = dataclasses.replace(CFG, default_expires=1800)
    out = run(register([f"<{PHONE}>;expires=120", f"<{DESK}>"], expires="900"), cfg=cfg)
    assert [h for h in out.headers if h[0] == "Contact"] == [
        ("Contact", f"<{PHONE}>;expires=120"),
        ("Contact", f"<{DESK}>;expires=900"),
    ]
    out = run(register([f"<{PHONE}>"]), cfg=cfg)
    assert out.headers[0] == ("Contact", f"<{PHONE}>;expires=1800")


def test_a_longer_request_is_shortened_to_max_expires():
    out = run(register([f"<{PHONE}>;expires=86400"]))
    assert out == ok([f"<{PHONE}>;expires=3600"], [fresh(granted=3600)])


def test_max_expires_zero_means_no_maximum():
    out = run(register([f"<{PHONE}>;expires=86400"]), cfg=dataclasses.replace(CFG, max_expires=0))
    assert out.headers[0] == ("Contact", f"<{PHONE}>;expires=86400")


def test_a_refresh_with_a_higher_cseq_updates_the_binding_in_place():
    other = binding(DESK, call_id="desk")
    stored = binding(PHONE, cseq=5, expires_in=100)
    out = run(register([f"<{PHONE}>"], cseq=6, expires="3600"), [other, stored])
    assert out == ok([f"<{DESK}>;expires=3600", f"<{PHONE}>;expires=3600"], [other, fresh(cseq=6)])


def test_a_contact_equal_by_rfc3261_19_1_4_refreshes_the_same_binding():
    stored = binding("sip:alice@phone.example.com;transport=tcp")
    out = run(register(["<sip:%61lice@PHONE.example.com;Transport=TCP;ob>"], cseq=2), [stored])
    assert out.bindings == [fresh("sip:%61lice@PHONE.example.com;Transport=TCP;ob", cseq=2)]


def test_a_contact_differing_by_port_or_transport_is_another_binding():
    stored = binding("sip:alice@192.0.2.10")
    out = run(register(["<sip:alice@192.0.2.10:5060>", "<sip:alice@192.0.2.10;transport=tcp>"], cseq=2), [stored])
    assert [b.contact for b in out.bindings] == [
        "sip:alice@192.0.2.10", "sip:alice@192.0.2.10:5060", "sip:alice@192.0.2.10;transport=tcp"
    ]


def test_expires_zero_removes_the_binding():
    out = run(register([f"<{PHONE}>;expires=0"], cseq=2), [binding(PHONE), binding(DESK, call_id="d")])
    assert out == ok([f"<{DESK}>;expires=3600"], [binding(DESK, call_id="d")])


def test_expires_header_zero_removes_every_listed_contact():
    out = run(register([f"<{PHONE}>", f"<{DESK}>"], expires="0", cseq=2), [binding(PHONE), binding(DESK)])
    assert out == ok([], [])


def test_removing_a_contact_that_is_not_bound_changes_nothing():
    out = run(register([f"<{DESK}>;expires=0"], cseq=2), [binding(PHONE)])
    assert out == ok([f"<{PHONE}>;expires=3600"], [binding(PHONE)])


def test_several_contacts_are_added_in_order_with_their_q():
    out = run(register([f"<{PHONE}>;q=0.7", f"<{DESK}>;q=1.0", "<sip:alice@203.0.113.9>;q=0"]))
    assert [h[1] for h in out.headers[:3]] == [
        f"<{PHONE}>;expires=3600;q=0.7",
        f"<{DESK}>;expires=3600;q=1",
        "<sip:alice@203.0.113.9>;expires=3600;q=0",
    ]
    assert [b.q for b in out.bindings] == [0.7, 1.0, 0.0]


def test_the_same_contact_twice_in_one_register_the_last_wins():
    out = run(register([f"<{PHONE}>;expires=600", f"<{PHONE}>;expires=1200"]))
    assert out.bindings == [fresh(granted=1200)]
    out = run(register([f"<{PHONE}>;expires=600", f"<{PHONE}>;expires=0"], cseq=2), [binding(PHONE)])
    assert out.bindings == []


def test_expired_bindings_are_dropped_and_not_listed():
    gone = binding(DESK, expires_in=-1)
    out = run(register([f"<{PHONE}>"]), [gone])
    assert out == ok([f"<{PHONE}>;expires=3600"], [fresh()])


def test_an_expired_binding_does_not_order_a_new_register():
    # The same Call-ID with a lower CSeq would be out of order, but the binding is gone already.
    gone = binding(PHONE, cseq=9, expires_in=0)
    out = run(register([f"<{PHONE}>"], cseq=3), [gone])
    assert out.bindings == [fresh(cseq=3)]


def test_the_200_shows_the_seconds_left_of_untouched_bindings():
    out = run(register([f"<{PHONE}>"], cseq=2), [binding(DESK, expires_in=10.25)])
    assert out.headers[0] == ("Contact", f"<{DESK}>;expires=11")


def test_user_agent_is_recorded_as_sent():
    out = run(register(user_agent="Linphone/5.2 (belle-sip/5.2)"))
    assert out.bindings[0].user_agent == "Linphone/5.2 (belle-sip/5.2)"


# ---------------------------------------------------------------------------------------------
# §10.3 steps 6-7: Call-ID and CSeq ordering
# ---------------------------------------------------------------------------------------------


def test_another_call_id_updates_whatever_its_cseq():
    out = run(register([f"<{PHONE}>"], call_id="rebooted", cseq=1), [binding(PHONE, cseq=900)])
    assert out.bindings == [fresh(call_id="rebooted", cseq=1)]


def test_the_same_call_id_with_a_lower_cseq_fails_and_stores_nothing():
    stored = [binding(PHONE, cseq=5)]
    assert run(register([f"<{PHONE}>"], cseq=4), stored) == failed(400, "Bad Request - out-of-order CSeq")


def test_an_out_of_order_contact_fails_the_whole_register():
    stored = [binding(PHONE, cseq=5)]
    out = run(register(["<sip:alice@203.0.113.1>", f"<{PHONE}>;expires=0"], cseq=3), stored)
    assert out == failed(400, "Bad Request - out-of-order CSeq")


def test_the_same_cseq_within_cseq_delay_is_a_retransmission_answered_without_change():
    stored = binding(PHONE, cseq=5, modified_ago=3)
    out = run(register([f"<{PHONE}>"], cseq=5, expires="600"), [stored])
    assert out == ok([f"<{PHONE}>;expires=3600"], [stored])


def test_the_same_cseq_after_cseq_delay_fails():
    stored = binding(PHONE, cseq=5, modified_ago=20)
    assert run(register([f"<{PHONE}>"], cseq=5), [stored]) == failed(400, "Bad Request - out-of-order CSeq")


def test_cseq_delay_zero_makes_every_repeat_fail_as_the_rfc_reads():
    stored = binding(PHONE, cseq=5, modified_ago=0)
    cfg = dataclasses.replace(CFG, cseq_delay=0.0)
    assert run(register([f"<{PHONE}>"], cseq=5), [stored], cfg=cfg).status == 400


# ---------------------------------------------------------------------------------------------
# §10.3 step 6: Contact: *
# ---------------------------------------------------------------------------------------------


def test_star_with_expires_zero_removes_every_binding():
    stored = [binding(PHONE, cseq=3), binding(DESK, call_id="other", cseq=99)]
    assert run(register(["*"], expires="0", cseq=4), stored) == ok([], [])


def test_star_fails_when_a_binding_of_the_same_call_id_has_a_higher_cseq():
    stored = [binding(DESK, call_id="other"), binding(PHONE, cseq=7)]
    assert run(register(["*"], expires="0", cseq=4), stored) == failed(400, "Bad Request - out-of-order CSeq")


def test_star_repeated_within_cseq_delay_keeps_the_binding_that_repeat_made():
    stored = binding(PHONE, cseq=4, modified_ago=1)
    assert run(register(["*"], expires="0", cseq=4), [stored]) == ok([f"<{PHONE}>;expires=3600"], [stored])


@pytest.mark.parametrize("expires", [None, "3600", "1"])
def test_star_needs_expires_zero(expires):
    out = run(register(["*"], expires=expires), [binding(PHONE)])
    assert out == failed(400, "Bad Request - '*' Contact without Expires: 0")


def test_star_must_be_the_only_contact():
    out = run(register(["*", f"<{PHONE}>"], expires="0"), [binding(PHONE)])
    assert out == failed(400, "Bad Request - '*' Contact with other Contacts")


def test_star_in_a_comma_list_is_a_malformed_contact():
    out = run(register([f"<{PHONE}>, *"], expires="0"))
    assert out == failed(400, "Bad Request - invalid Contact")


def test_star_on_an_aor_without_bindings_is_a_200():
    assert run(register(["*"], expires="0")) == ok([], [])


# ---------------------------------------------------------------------------------------------
# Query (§10.3 step 6: no Contact, skip to step 8)
# ---------------------------------------------------------------------------------------------


def test_a_register_without_contact_lists_the_bindings_and_stores_nothing():
    stored = [binding(PHONE, q=0.5), binding(DESK, expires_in=-5), binding("sip:alice@203.0.113.9", expires_in=42)]
    out = run(register([]), stored)
    assert out == ok([f"<{PHONE}>;expires=3600;q=0.5", "<sip:alice@203.0.113.9>;expires=42"], None)


def test_a_query_of_an_aor_without_bindings():
    assert run(register([])) == ok([], None)


# ---------------------------------------------------------------------------------------------
# §10.3 step 7: 423 Interval Too Brief
# ---------------------------------------------------------------------------------------------


def test_an_interval_below_min_expires_gets_423_with_min_expires():
    out = run(register([f"<{PHONE}>;expires=30"]), [binding(PHONE)])
    assert out == failed(423, "Interval Too Brief", [("Min-Expires", "60")])


def test_one_brief_contact_rejects_the_whole_register():
    out = run(register([f"<{DESK}>", f"<{PHONE}>"], expires="59"))
    assert out == failed(423, "Interval Too Brief", [("Min-Expires", "60")])


def test_min_expires_itself_and_zero_are_accepted():
    assert run(register([f"<{PHONE}>;expires=60"])).headers[0] == ("Contact", f"<{PHONE}>;expires=60")
    assert run(register([f"<{PHONE}>;expires=0"])).status == 200


def test_min_expires_zero_accepts_any_interval():
    out = run(register([f"<{PHONE}>;expires=1"]), cfg=dataclasses.replace(CFG, min_expires=0))
    assert out.headers[0] == ("Contact", f"<{PHONE}>;expires=1")


def test_no_423_for_an_hour_or_more_even_below_min_expires():
    # §10.3 step 7: 423 only if the request is "greater than zero AND smaller than one hour AND
    # less than a registrar-configured minimum".
    cfg = dataclasses.replace(CFG, min_expires=7200, max_expires=0, default_expires=7200)
    assert run(register([f"<{PHONE}>;expires=3600"]), cfg=cfg).headers[0] == ("Contact", f"<{PHONE}>;expires=3600")
    assert run(register([f"<{PHONE}>;expires=3599"]), cfg=cfg) == failed(
        423, "Interval Too Brief", [("Min-Expires", "7200")]
    )


# ---------------------------------------------------------------------------------------------
# Malformed requests: 400 naming the problem, nothing stored
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "-1", "4294967296", "99999999999999999999", "1.5", "", "60, 70"])
def test_a_malformed_expires_header_is_400(value):
    assert run(register(expires=value)) == failed(400, "Bad Request - invalid Expires")


def test_the_largest_expires_is_accepted_and_capped():
    assert run(register(expires="4294967295")).headers[0] == ("Contact", f"<{PHONE}>;expires=3600")


def test_two_expires_headers_are_400():
    out = run(register(expires="60", extra=["Expires: 60"]))
    assert out == failed(400, "Bad Request - invalid Expires")


@pytest.mark.parametrize("param", ["expires=abc", "expires=-5", "expires=4294967296", "expires"])
def test_a_malformed_expires_param_is_400(param):
    assert run(register([f"<{PHONE}>;{param}"])) == failed(400, "Bad Request - invalid expires parameter")


@pytest.mark.parametrize("q", ["2", "1.5", "0.1234", "-0.5", "abc", "1.001", ".5"])
def test_a_malformed_q_is_400(q):
    assert run(register([f"<{PHONE}>;q={q}"])) == failed(400, "Bad Request - invalid q")


def test_a_q_flag_without_value_is_400():
    assert run(register([f"<{PHONE}>;q"])) == failed(400, "Bad Request - invalid q")


@pytest.mark.parametrize("contact", ["<sip:alice@>", "<nonsense>", "<sip:alice@host", '"unterminated <sip:a@b>'])
def test_a_malformed_contact_is_400(contact):
    assert run(register([contact])) == failed(400, "Bad Request - invalid Contact")


def test_a_malformed_to_is_400():
    assert run(register(to="<sip:alice@>")) == failed(400, "Bad Request - invalid To", aor=None)


def test_missing_to_call_id_or_cseq_is_400():
    raw = register().to_bytes()
    for name, reason in [(b"To", "missing To"), (b"Call-ID", "missing Call-ID"), (b"CSeq", "missing CSeq")]:
        lines = [ln for ln in raw.split(b"\r\n") if not ln.startswith(name + b":")]
        msg = fastsip.parse(b"\r\n".join(lines))
        assert run(msg) == failed(400, f"Bad Request - {reason}", aor=None)


def test_a_malformed_cseq_or_via_is_400():
    assert run(register(cseq="x")) == failed(400, "Bad Request - invalid CSeq", aor=None)
    out = run(register(extra=["Via: SIP/2.0/UDP"]))
    assert out == failed(400, "Bad Request - invalid Via", aor=None)


def test_a_cseq_method_other_than_register_is_400():
    raw = register().to_bytes().replace(b"CSeq: 1 REGISTER", b"CSeq: 1 OPTIONS")
    assert run(fastsip.parse(raw)) == failed(400, "Bad Request - CSeq method is not REGISTER", aor=None)


def test_a_malformed_path_is_400():
    out = run(register(path=["sip:p1.example.net;lr"], supported="path"))
    assert out == failed(400, "Bad Request - invalid Path")
    out = run(register(path=["<sip:p1.example.net;lr>, <bogus>"], supported="path"))
    assert out == failed(400, "Bad Request - invalid Path")


# ---------------------------------------------------------------------------------------------
# Method, Require, AOR and domain (§10.3 steps 2 and 5)
# ---------------------------------------------------------------------------------------------


def test_only_register_is_accepted():
    out = run(register(method="INVITE"))
    assert out == failed(405, "Method Not Allowed", [("Allow", "REGISTER")], aor=None)


def test_require_of_an_unknown_extension_is_420_listing_it():
    out = run(register(require="path, gruu, 100rel, gruu"))
    assert out == failed(420, "Bad Extension", [("Unsupported", "gruu, 100rel")], aor=None)


def test_require_path_and_outbound_are_supported():
    assert run(register(require="Path, outbound", supported="path, outbound")).status == 200


def test_an_aor_outside_our_domains_is_404():
    assert run(register(to="<sip:alice@example.org>")) == failed(404, "Not Found", aor=None)


def test_the_domain_compares_case_insensitively_and_the_aor_is_canonical():
    out = run(register(to="Alice <sip:Alice@EXAMPLE.com;user=phone>"))
    assert out.status == 200 and out.aor == "sip:Alice@example.com"
    assert out.bindings[0].aor == "sip:Alice@example.com"


def test_no_domains_configured_serves_any():
    out = run(register(to="<sip:bob@example.org>"), cfg=RegistrarConfig())
    assert out.status == 200 and out.aor == "sip:bob@example.org"


def test_a_to_that_is_not_a_sip_uri_is_400():
    out = run(register(to="<tel:+15551234567>"))
    assert out == failed(400, "Bad Request - To is not a SIP or SIPS URI", aor=None)


def test_a_to_without_user_is_400():
    assert run(register(to="<sip:example.com>")) == failed(400, "Bad Request - no user in To URI", aor=None)


def test_sips_is_its_own_aor():
    out = run(register(to="<sips:alice@example.com>"))
    assert out.aor == "sips:alice@example.com"


# ---------------------------------------------------------------------------------------------
# max_contacts: 503 as OpenSIPS
# ---------------------------------------------------------------------------------------------


def test_a_new_binding_past_max_contacts_is_503():
    cfg = dataclasses.replace(CFG, max_contacts=2)
    stored = [binding(PHONE), binding(DESK)]
    out = run(register(["<sip:alice@203.0.113.9>"], cseq=2), stored, cfg=cfg)
    assert out == failed(503, "Service Unavailable - too many registered contacts")


def test_refreshing_or_replacing_within_max_contacts_is_fine():
    cfg = dataclasses.replace(CFG, max_contacts=2)
    stored = [binding(PHONE), binding(DESK)]
    assert run(register([f"<{PHONE}>"], cseq=2), stored, cfg=cfg).status == 200
    out = run(register([f"<{PHONE}>;expires=0", "<sip:alice@203.0.113.9>"], cseq=2), stored, cfg=cfg)
    assert [b.contact for b in out.bindings] == [DESK, "sip:alice@203.0.113.9"]


def test_an_aor_already_over_max_contacts_can_still_refresh():
    cfg = dataclasses.replace(CFG, max_contacts=1)
    stored = [binding(PHONE), binding(DESK)]
    assert run(register([f"<{PHONE}>"], cseq=2), stored, cfg=cfg).status == 200


# ---------------------------------------------------------------------------------------------
# Numbers, Contact forms, the 200's Contact values
# ---------------------------------------------------------------------------------------------


def test_numbers_may_have_leading_zeros():
    # delta-seconds and reg-id are 1*DIGIT (RFC 3261 §25.1, RFC 5626 §4.2).
    out = run(register([f"<{PHONE}>;expires=00000000000000120"], expires="0000000000000000900"))
    assert out.headers[0] == ("Contact", f"<{PHONE}>;expires=120")
    out = run(register([f'<{PHONE}>;+sip.instance="<urn:uuid:1>";reg-id=007'], supported="outbound"))
    assert out.bindings[0].reg_id == 7


def test_the_contact_uri_is_stored_as_written_without_display_name_or_contact_params():
    out = run(register(['"Alice\'s phone" <sip:alice@192.0.2.10:5062;transport=udp?Subject=hi>;expires=600;q=0.3;x-foo']))
    assert out.bindings[0].contact == "sip:alice@192.0.2.10:5062;transport=udp?Subject=hi"
    assert out.headers[0] == ("Contact", "<sip:alice@192.0.2.10:5062;transport=udp?Subject=hi>;expires=600;q=0.3")


def test_a_contact_that_is_not_sip_can_be_registered_and_refreshed():
    stored = binding("mailto:alice@example.com")
    out = run(register(["<MAILTO:alice@example.com>"], cseq=2), [stored])
    assert [b.contact for b in out.bindings] == ["MAILTO:alice@example.com"]


def test_contact_header_values_format():
    bs = [
        binding(PHONE, expires_in=100, q=1.0),
        binding(DESK, expires_in=0.2, q=0.125),
        binding("sip:alice@203.0.113.9", expires_in=-1),
        binding("sip:alice@203.0.113.10", expires_in=50, instance="<urn:uuid:1>"),
        binding("sip:alice@203.0.113.11", expires_in=7, instance="<urn:uuid:1>", reg_id=2, q=0.0),
    ]
    assert contact_header_values(bs, NOW) == [
        f"<{PHONE}>;expires=100;q=1",
        f"<{DESK}>;expires=1;q=0.125",
        '<sip:alice@203.0.113.10>;expires=50;+sip.instance="<urn:uuid:1>"',
        '<sip:alice@203.0.113.11>;expires=7;q=0;+sip.instance="<urn:uuid:1>";reg-id=2',
    ]
