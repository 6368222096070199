"""The routing-script layer, the example scripts, accounting calls and config validation (sans-IO)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from proxyapp.config import Config, ConfigError, Listen
from proxyapp.script import Script, ScriptLoadError
from .harness import CALLEE, CALLER, Harness, req, resp_for, sends

ROOT = Path(__file__).resolve().parents[2]


def test_examples_default_script_is_the_builtin_one():
    assert (ROOT / "examples" / "default_script.py").read_text() == (ROOT / "src" / "proxyapp" / "default_script.py").read_text()


def test_example_configs_are_valid():
    for name in ("proxyapp.toml", "trunk.toml"):
        cfg = Config.load(ROOT / "examples" / name)
        if cfg.script:
            Script.load(cfg.script)
    cfg = Config.load(ROOT / "examples" / "trunk.toml")
    assert cfg.script == str((ROOT / "examples" / "trunk_script.py").resolve())
    assert cfg.timers.fr_timeout == 5 and cfg.timers.t1 == 0.5
    assert cfg.acc == {"log_level": "INFO"}


def test_example_config_commented_accounting_block_is_valid_once_uncommented():
    """The `# [acc]` block of examples/proxyapp.toml is what a user uncomments: every key in it
    must be one AccConfig accepts, with the value written there."""
    import tomllib

    from proxyapp.acc import AccConfig

    lines = (ROOT / "examples" / "proxyapp.toml").read_text().splitlines()
    start = lines.index("# [acc]")
    block = []
    for line in lines[start:]:
        if not line.startswith("# ") or line.startswith("# Free-form"):
            break
        block.append(line[2:])
    acc = tomllib.loads("\n".join(block))["acc"]
    assert set(acc) == {"db_url", "spool_dir", "engine", "nice", "log_level"}
    cfg = AccConfig.from_dict(acc)
    assert (cfg.engine, cfg.nice, cfg.log_level) == ("process", 10, "INFO")


# ------------------------------------------------------------------ the trunk example


def trunk(**params):
    base = {
        "trusted": ["10.0.0.0/8"],
        "default_gateway": "udp:192.0.2.30:5060",
        "backup_gateway": "udp:192.0.2.31:5060",
        "gateways": {"1": "udp:192.0.2.10:5060", "44": "udp:192.0.2.20:5060"},
    }
    base.update(params)
    return Harness(script=Script.load(str(ROOT / "examples" / "trunk_script.py")), script_params=base)


@pytest.mark.parametrize(
    ("user", "gateway", "ruri_user"),
    [("+442071234567", ("192.0.2.20", 5060), "442071234567"), ("0012125551234", ("192.0.2.10", 5060), "12125551234"),
     ("3312345", ("192.0.2.30", 5060), "3312345")],
)
def test_trunk_routes_by_longest_prefix_after_normalising(user, gateway, ruri_user):
    h = trunk()
    s = sends(h.rx(req(ruri=f"sip:{user}@example.net")))
    fwd = s[1]
    assert fwd.dest.addr == gateway
    assert fwd.data.startswith(f"INVITE sip:{ruri_user}@example.net SIP/2.0\r\nRecord-Route: ".encode())
    assert b"\r\nP-hint: outbound\r\n\r\n" in fwd.data


def test_trunk_rejects_untrusted_and_answers_options_to_itself():
    h = trunk(trusted=["192.168.0.0/16"])
    s = sends(h.rx(req(ruri="sip:123@example.net")))
    assert len(s) == 1 and s[0].data.startswith(b"SIP/2.0 403 Forbidden\r\n")
    s = sends(h.rx(req("OPTIONS", ruri="sip:198.51.100.10", branch="z9hG4bKopt")))
    assert len(s) == 1 and s[0].data.startswith(b"SIP/2.0 200 OK\r\n")


def test_trunk_fails_over_to_the_backup_then_gives_up():
    h = trunk()
    s = sends(h.rx(req(ruri="sip:3312345@example.net")))
    first = s[1]
    s = sends(h.rx(resp_for(first.data, 500, "Oops"), first.dest.addr))
    assert s[1].dest.addr == ("192.0.2.31", 5060)
    s = sends(h.rx(resp_for(s[1].data, 486, "Busy"), ("192.0.2.31", 5060)))
    # best of (500 -> 486): the 4xx wins (RFC 3261 §16.7 step 6); no third attempt
    assert [x.data.split(b"\r\n")[0] for x in s] == [b"ACK sip:3312345@example.net SIP/2.0", b"SIP/2.0 486 Busy"]


# ------------------------------------------------------------------ reply and branch routes


def test_reply_route_sees_responses_and_can_drop_provisionals_branch_route_runs():
    seen = []

    def route(msg, ctx):
        ctx.t_on_reply("on_reply")
        ctx.t_on_branch("on_branch")
        ctx.t_relay()

    def on_reply(resp, ctx):
        seen.append(resp.status)
        return False if resp.status == 183 else None

    def on_branch(msg, ctx):
        ctx.append_hf("X-Branch", str(ctx.branch.index))

    h = Harness(script=Script(types.SimpleNamespace(route=route, on_reply=on_reply, on_branch=on_branch), None))
    fwd = sends(h.rx(req()))[1]
    assert b"\r\nX-Branch: 0\r\n" in fwd.data
    assert sends(h.rx(resp_for(fwd.data, 183, "Progress"), CALLEE)) == []
    assert len(sends(h.rx(resp_for(fwd.data, 180, "Ringing"), CALLEE))) == 1
    assert seen == [183, 180]


def test_script_load_errors():
    with pytest.raises(ScriptLoadError, match="no such file"):
        Script.load("/nonexistent/script.py")
    with pytest.raises(ScriptLoadError, match="no route"):
        Script(types.SimpleNamespace(), None)


# ------------------------------------------------------------------ accounting calls


class FakeAcc:
    def __init__(self):
        self.calls = []

    def observe_request(self, request, source, ts):
        self.calls.append(("request", request.method, source, ts))

    def observe_response(self, response, ts):
        self.calls.append(("response", response.status))

    def transaction_completed(self, mark, request, status, reason, to_tag, source, ts):
        self.calls.append(("completed", mark, request.method, status, reason, to_tag is not None, source, ts))

    def branch_failed(self, mark, request, status, reason, to_tag, source, ts):
        self.calls.append(("branch_failed", status))


def test_accounting_sees_marks_local_finals_and_every_upstream_response():
    def route(msg, ctx):
        if ctx.is_method("INVITE"):
            ctx.do_accounting("db|log", "cdr|missed", "my_acc")
        ctx.t_relay()

    h = Harness(script=Script(types.SimpleNamespace(route=route), None))
    acc = FakeAcc()
    h.proxy.acc = acc
    fwd = sends(h.rx(req()))[1]
    h.rx(resp_for(fwd.data, 180, "Ringing"), CALLEE)
    h.rx(resp_for(fwd.data, 480, "Unavailable"), CALLEE)
    kinds = [c[0] for c in acc.calls]
    # (our own 100 is hop by hop: not a response forwarded upstream)
    assert kinds == ["request", "response", "branch_failed", "completed", "response"]
    assert acc.calls[0] == ("request", "INVITE", CALLER, 1000.0)
    assert acc.calls[1] == ("response", 180) and acc.calls[2] == ("branch_failed", 480)
    assert acc.calls[4] == ("response", 480)
    done = acc.calls[3]
    mark = done[1]
    assert (mark.types, mark.cdr, mark.missed, mark.table) == ({"db", "log"}, True, True, "my_acc")
    assert done[2:] == ("INVITE", 480, "Unavailable", True, CALLER, 1000.0)
    # a non-marked OPTIONS that times out upstream: no 408 is sent (RFC 4320), but accounting is
    # told the transaction ended with the local 408 it would have been (OpenSIPS tm accounts its
    # internal 408; a BYE that timed out ends its dialog's CDR)
    acc.calls.clear()
    opt = sends(h.rx(req("OPTIONS", branch="z9hG4bKo")))[0]
    assert sends(h.fire(opt.tx, "F")) == []
    assert [c[0] for c in acc.calls] == ["request", "completed"]
    assert acc.calls[1][1:5] == (None, "OPTIONS", 408, "Request Timeout")
    # a local 408 (Timer B) on an INVITE is completed with mark None when not marked (the
    # default script marks INVITEs, so a script that only relays)
    h2 = Harness(script=Script(types.SimpleNamespace(route=lambda msg, ctx: ctx.t_relay()), None))
    acc2 = FakeAcc()
    h2.proxy.acc = acc2
    fwd = sends(h2.rx(req()))[1]
    h2.fire(fwd.tx, "B")
    assert ("completed", None, "INVITE", 408, "Request Timeout", True, CALLER, 1000.0) in acc2.calls


# ------------------------------------------------------------------ configuration


def test_embedded_defaults_account_to_sqlite_in_the_working_directory():
    from proxyapp.acc import AccConfig

    from proxyapp.config import DEFAULT_ACC

    cfg = Config.embedded()
    assert [str(x) for x in cfg.listen] == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
    assert cfg.script is None and cfg.acc == DEFAULT_ACC
    acc = AccConfig.from_dict(cfg.acc)
    assert str(acc.sqlite_path) == "proxyapp-acc.db" and not acc.db_is_postgres
    assert acc.spool_dir == "proxyapp-acc-spool"
    # A configuration file without [acc] has no accounting; the embedded dict is not shared.
    assert Config.from_dict({}).acc == {}
    cfg.acc["db_url"] = "x.db"
    assert Config.embedded().acc == DEFAULT_ACC


def test_default_script_marks_initial_invites_for_log_db_cdr_missed_failed():
    h = Harness()
    h.rx(req())
    (tx,) = h.proxy.server_txs.values()
    mark = tx.owner.acc_mark
    assert (mark.types, mark.cdr, mark.missed, mark.failed, mark.table) == ({"log", "db"}, True, True, True, None)
    h.rx(req("OPTIONS", branch="z9hG4bKo"))
    opt = [t for t in h.proxy.server_txs.values() if t is not tx][0]
    assert opt.owner.acc_mark is None
    # a script wrapping the default route that marked the INVITE itself keeps its own mark
    from proxyapp import default_script

    def wrapper(msg, ctx):
        ctx.do_accounting("db", "cdr")
        default_script.route(msg, ctx)

    h2 = Harness(script=Script(types.SimpleNamespace(route=wrapper), None))
    h2.rx(req())
    (own,) = [t.owner.acc_mark for t in h2.proxy.server_txs.values()]
    assert (own.types, own.cdr, own.missed, own.failed) == ({"db"}, True, False, False)
    # each transaction has its own mark (a mark is mutable: missed is cleared after use)
    h.rx(req(branch="z9hG4bKc2", cseq=2))
    marks = [t.owner.acc_mark for t in h.proxy.server_txs.values() if t.owner.method == "INVITE"]
    assert len(marks) == 2 and marks[0] == marks[1] and marks[0] is not marks[1]


def test_config_defaults():
    cfg = Config.from_dict({})
    assert [str(x) for x in cfg.listen] == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
    assert cfg.script is None and cfg.trying_reason == "Giving a try"
    t = cfg.timers
    assert (t.t1, t.t2, t.t4, t.fr_timeout, t.fr_inv_timeout, t.wt_timer) == (0.5, 4.0, 5.0, 32.0, 180.0, 32.0)


def test_listen_parsing():
    assert Listen.parse("udp:[::1]:5070") == Listen("udp", "::1", 5070)
    assert str(Listen.parse("TCP:10.0.0.1:5061")) == "tcp:10.0.0.1:5061"
    assert Listen.parse("udp:10.0.0.1") == Listen("udp", "10.0.0.1", 5060)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"listen": []}, "listen"),
        ({"listen": ["udp:1.2.3.4:99999"]}, "listen[0]"),
        ({"aliases": "x"}, "aliases"),
        ({"server_header": "a\nb"}, "server_header"),
        ({"timers": {"T2": 100, "T1": 500}}, "timers.T2"),
        ({"timers": {"fr_timeout": "5"}}, "timers.fr_timeout"),
        ({"acc": 3}, "acc"),
        ({"max_message_size": 10}, "max_message_size"),
    ],
)
def test_config_errors_name_the_key(data, key):
    with pytest.raises(ConfigError) as ei:
        Config.from_dict(data)
    assert ei.value.key == key
    assert str(ei.value).startswith(f"config: {key}: ")


def test_accounting_sees_stateless_finals_too():
    h = Harness()
    acc = FakeAcc()
    h.proxy.acc = acc
    h.rx(req(max_forwards="0"))  # the default script's sl_send_reply(483)
    assert acc.calls[0] == ("request", "INVITE", CALLER, 1000.0)
    assert acc.calls[1] == ("response", 483)
    assert acc.calls[2] == ("completed", None, "INVITE", 483, "Too Many Hops", True, CALLER, 1000.0)
    assert len(acc.calls) == 3


def test_drop_accounting_undoes_do_accounting_in_whole_or_in_part():
    def route(msg, ctx):
        ctx.do_accounting("db|log|aaa", "cdr|missed|failed", "my_acc")
        if msg.headers.get("X-Drop") == "all":
            ctx.drop_accounting()
        elif msg.headers.get("X-Drop") == "some":
            ctx.drop_accounting("aaa", "missed")
        ctx.t_relay()

    h = Harness(script=Script(types.SimpleNamespace(route=route), None))
    h.rx(req(branch="z9hG4bKd1", extra="X-Drop: all\r\n"))
    h.rx(req(branch="z9hG4bKd2", cseq=2, extra="X-Drop: some\r\n"))
    marks = {tx.owner.request.headers["X-Drop"]: tx.owner.acc_mark for tx in h.proxy.server_txs.values()}
    everything, some = marks["all"], marks["some"]
    assert (everything.types, everything.cdr, everything.missed, everything.failed) == (set(), False, False, False)
    assert (some.types, some.cdr, some.missed, some.failed, some.table) == ({"db", "log"}, True, False, True, "my_acc")


def test_acc_subcommand_prints_the_schema(capsys):
    from proxyapp.__main__ import main

    assert main(["acc", "schema", "--dialect", "postgres"]) == 0
    out = capsys.readouterr().out
    assert 'CREATE TABLE IF NOT EXISTS "acc"' in out and '"missed_calls"' in out and "BIGINT" in out
