"""do_accounting argument parsing, mark semantics, record extraction and the config table."""

import pytest

from proxyapp.acc import AccConfig, AccMark, AccRecord
from proxyapp.acc.records import compile_extra, split_comment

from .sipfakes import request


def test_parse_seed_example():
    m = AccMark.parse(types="db|log", flags="cdr|missed", table="my_acc")
    assert m.types == {"db", "log"} and m.cdr and m.missed and not m.failed and m.table == "my_acc"
    assert m.types_tuple() == ("log", "db")
    b = AccMark.parse("aaa")
    assert b.types == {"aaa"} and not (b.cdr or b.missed or b.failed) and b.table is None


@pytest.mark.parametrize(
    "types,flags,table,msg",
    [("db|sms", "", None, "unknown type 'sms'"), ("", "", None, "at least one type"), ("db", "cdr|lost", None, "unknown flag 'lost'"), ("db", "", "acc; drop", "not a valid identifier")],
)
def test_parse_rejects(types, flags, table, msg):
    with pytest.raises(ValueError, match=msg):
        AccMark.parse(types, flags, table)


def test_update_rearms_and_drop():
    m = AccMark.parse("db", "missed")
    m.missed = False  # cleared by the first missed record
    m.update("db", "missed")  # failure route re-arms
    assert m.missed and m.types == {"db"}
    m.update("log", "failed", "t2")
    assert m.types == {"db", "log"} and m.failed and m.table == "t2"
    m.drop(types="log")
    assert m.types == {"db"} and m.active
    m.drop(flags="missed")
    assert not m.missed and m.failed
    m.drop()
    assert not m.active and not m.failed


def test_split_comment():
    assert split_comment("403 Forbidden") == (403, "Forbidden")
    assert split_comment("200") == (200, "")
    assert split_comment("Call screened") == (None, "Call screened")


def test_extra_getters():
    req = request("INVITE", "c1", "ft", ua="Bria 3 release 3.5.5")
    get = compile_extra({"src_ip": "$si", "src_port": "$sp", "fu": "$fU", "fd": "$fd", "tu": "$tU", "ru": "$rU", "rd": "$rd", "ua": "$hdr(User-Agent)", "ci": "$ci", "furi": "$fu"})
    vals = {k: g(req, ("192.0.2.7", 4539)) for k, g in get.items()}
    assert vals == {
        "src_ip": "192.0.2.7",
        "src_port": "4539",
        "fu": "8887779996",
        "fd": "198.51.100.1",
        "tu": "2222222222",
        "ru": "2222222222",
        "rd": "203.0.113.9",
        "ua": "Bria 3 release 3.5.5",
        "ci": "c1",
        "furi": "sip:8887779996@198.51.100.1",
    }
    with pytest.raises(ValueError, match="unsupported pseudo-variable"):
        compile_extra({"x": "$xyz"})
    with pytest.raises(ValueError, match="clashes"):
        compile_extra({"callid": "$ci"})


def test_record_ids_unique_time_ordered_and_reseeded_after_fork():
    import os
    import time
    import uuid

    from proxyapp.acc.records import new_record_id, uuid5_hex

    now_ms = int(time.time() * 1000)
    ids = [new_record_id() for _ in range(5000)]
    assert len(set(ids)) == 5000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert abs(int(ids[0][:12], 16) - now_ms) < 5000  # the first 48 bits are epoch ms
    assert AccRecord(kind="acc", types=("db",), table=None, method="BYE", from_tag="a", to_tag="b",
                     callid="c", sip_code=200, sip_reason="OK", time=1).record_id not in ids
    # A forked child draws its own random start: its ids differ from the parent's next ones.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(w, "".join(new_record_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 10000).decode()
    os.close(r)
    os.waitpid(pid, 0)
    parent = [new_record_id() for _ in range(100)]
    assert len(child) == 3200  # the child did make its 100 ids (a failing reseed must not pass unseen)
    assert {child[i:i + 32][12:] for i in range(0, 3200, 32)}.isdisjoint(p[12:] for p in parent)
    # ... and not from the parent's start with the counter reset either: the child's sequence is
    # nowhere near the parent's (a fresh 80-bit start is within 2**40 of it with probability 2**-39).
    low80 = (1 << 80) - 1
    c, p = int(child[:32], 16) & low80, int(parent[0], 16) & low80
    assert min((c - p) & low80, (p - c) & low80) > 1 << 40
    # uuid5_hex is uuid.uuid5 (CDR ids must not change across versions: they deduplicate).
    ns = uuid.UUID("6f1c6a4e-2f57-4d0b-9a49-3c1f1b0c4acc")
    for name in ("c\x1fa\x1fb", "é日本", ""):
        assert uuid5_hex(ns.bytes, name) == uuid.uuid5(ns, name).hex


def test_record_json_roundtrip_and_row():
    r = AccRecord(kind="cdr", types=("db", "log"), table="my_acc", method="INVITE", from_tag="a", to_tag="b", callid="c", sip_code=200, sip_reason="OK", time=1, duration=2, ms_duration=2500, setuptime=30, created=0, end_reason="bye", extra={"src_ip": "1.2.3.4"})
    assert AccRecord.from_json(r.to_json()) == r
    # row() is the insert order of the schema: record_id, the core columns, end_reason, extras.
    from proxyapp.acc.schema import columns

    names = ("src_ip", "user_agent")
    assert [c[0] for c in columns(names)] == list(r.columns(names))
    assert r.row(names) == tuple(r.columns(names).values()) == (
        r.record_id, "INVITE", "a", "b", "c", 200, "OK", 1, 2, 2500, 30, 0, "bye", "1.2.3.4", None)


def test_config_defaults_and_errors():
    cfg = AccConfig.from_dict({})
    assert cfg.db_url == "var/acc.db" and "src_ip" in cfg.extra_names
    cfg = AccConfig.from_dict({"db_url": "postgresql://u@h/db", "evi_udp": "127.0.0.1:9", "cdr_lifetime_s": 5})
    assert cfg.db_is_postgres and cfg.evi_addresses() == [("127.0.0.1", 9)] and cfg.cdr_lifetime_s == 5.0
    assert AccConfig.from_dict({"db_url": "sqlite:////tmp/x.db"}).sqlite_path.as_posix() == "/tmp/x.db"
    assert AccConfig.from_dict({"db_url": "sqlite:///rel/x.db"}).sqlite_path.as_posix() == "rel/x.db"
    for bad, key in [({"nope": 1}, "acc.nope"), ({"batch_max": 0}, "acc.batch_max"), ({"fsync": "yes"}, "acc.fsync"), ({"evi_format": "xml"}, "acc.evi_format"), ({"db_table_acc": "a b"}, "acc.db_table_acc"), ({"extra": {"ua": "$nope"}}, "acc.extra.ua"), ({"radius_server": "h:99999"}, "acc.radius_server"), ({"log_level": "LOUD"}, "acc.log_level")]:
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            AccConfig.from_dict(bad)
