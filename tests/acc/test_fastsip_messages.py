"""Accounting reads real fastsip messages (the seed's INVITE), not only the test stand-ins."""

import asyncio

import fastsip

from proxyapp.acc import AccConfig, Accounting, AccMark
from proxyapp.acc.records import ExtraFields, compile_extra, request_fields

from .memory import memory_backends, settle

INVITE = (
    "INVITE sip:2222222222@203.0.113.9;transport=udp SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.0.0.5:58088;branch=z9hG4bK-d8754z-1cf67b12fff3ba66-1---d8754z-;rport\r\n"
    "Max-Forwards: 70\r\n"
    "Contact: <sip:8887779996@10.0.0.5:58088;transport=udp>\r\n"
    "To: <sip:2222222222@203.0.113.9>\r\n"
    "From: <sip:8887779996@198.51.100.1>;tag=fd542335\r\n"
    "Call-ID: Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA\r\n"
    "CSeq: 1 INVITE\r\n"
    "User-Agent: Bria 3 release 3.5.5 stamp 71243\r\n"
    "Content-Length: 0\r\n\r\n"
)


def _resp(status, reason, to_tag):
    return fastsip.parse(
        (
            f"SIP/2.0 {status} {reason}\r\n"
            "Via: SIP/2.0/UDP 10.0.0.5:58088;branch=z9hG4bK-d8754z-1cf67b12fff3ba66-1---d8754z-;rport\r\n"
            f"To: <sip:2222222222@203.0.113.9>;tag={to_tag}\r\n"
            "From: <sip:8887779996@198.51.100.1>;tag=fd542335\r\n"
            "Call-ID: Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA\r\n"
            "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )


def test_fields_from_a_parsed_invite():
    req = fastsip.parse(INVITE.encode())
    assert request_fields(req) == ("INVITE", "fd542335", None, "Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA")
    get = compile_extra(AccConfig().extra)
    vals = {k: g(req, ("192.0.2.7", 4539)) for k, g in get.items()}
    assert vals == {
        "src_ip": "192.0.2.7", "src_port": "4539", "from_user": "8887779996", "from_host": "198.51.100.1",
        "to_user": "2222222222", "to_host": "203.0.113.9", "ruri_user": "2222222222", "ruri_host": "203.0.113.9",
        "user_agent": "Bria 3 release 3.5.5 stamp 71243",
    }


def test_extra_fields_equal_the_guarded_getters_and_survive_a_malformed_header():
    """ExtraFields (one try for all columns) gives what the per-column guarded getters give; a
    header fastsip can only reject when it is read (a lazy ParseError) empties just its columns,
    and request_fields falls back to field-by-field reading the same way."""
    from proxyapp.acc.records import _PV_EXPR

    # every pseudo-variable the generated extractor knows, plus headers present and absent
    spec = dict(AccConfig().extra, furi="$fu", ci="$ci", ru="$ru", missing="$hdr(X-Not-There)")
    spec |= {f"pv_{i}": pv for i, pv in enumerate(_PV_EXPR)}
    src = ("192.0.2.7", 4539)
    good = fastsip.parse(INVITE.encode())
    guarded = compile_extra(spec)
    assert ExtraFields(spec)(good, src) == {k: g(good, src) for k, g in guarded.items()}
    assert ExtraFields(spec)(good, src)["furi"] == "sip:8887779996@198.51.100.1"
    assert ExtraFields(spec)(good, src)["missing"] is None and ExtraFields(spec)(good, src)["ci"] == good.call_id

    bad = fastsip.parse(INVITE.replace("To: <sip:2222222222@203.0.113.9>", "To: <<<broken").encode())
    vals = ExtraFields(spec)(bad, src)
    assert vals == {k: g(bad, src) for k, g in guarded.items()}
    assert vals["to_user"] is None and vals["to_host"] is None
    assert vals["from_user"] == "8887779996" and vals["ruri_host"] == "203.0.113.9" and vals["src_port"] == "4539"
    assert request_fields(bad) == ("INVITE", "fd542335", None, "Y2UzN2VmYTFhMzczNDk3ZGE1NzM0YjI4NzUzYzQyZTA")


def test_cdr_from_parsed_messages(tmp_path):
    b = memory_backends()
    cfg = AccConfig.from_dict({"spool_dir": str(tmp_path), "flush_interval_ms": 1})
    inv = fastsip.parse(INVITE.encode())
    bye = fastsip.parse(
        INVITE.replace("INVITE sip:", "BYE sip:").replace("CSeq: 1 INVITE", "CSeq: 2 BYE").replace("To: <sip:2222222222@203.0.113.9>", "To: <sip:2222222222@203.0.113.9>;tag=as1").encode()
    )

    async def go():
        acc = Accounting(cfg, backends=b)
        await acc.start()
        acc.observe_request(inv, ("192.0.2.7", 4539), 100.0)
        acc.observe_response(_resp(180, "Ringing", "as1"), 100.5)
        acc.observe_response(_resp(200, "OK", "as1"), 101.0)
        acc.transaction_completed(AccMark.parse("db", "cdr"), inv, 200, "OK", "as1", ("192.0.2.7", 4539), 101.0)
        acc.observe_request(bye, ("192.0.2.7", 4539), 104.5)
        acc.transaction_completed(None, bye, 200, "OK", "as1", ("192.0.2.7", 4539), 104.51)
        await settle(acc)
        await acc.close()

    asyncio.run(go())
    [r] = b["db"].records
    assert (r.kind, r.from_tag, r.to_tag, r.created, r.time, r.setuptime, r.ms_duration) == ("cdr", "fd542335", "as1", 100000, 101000, 1000, 3500)
