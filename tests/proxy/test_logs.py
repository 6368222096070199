"""Log formats (proxyapp.logs.setup_logging): "text" lines, or one JSON object per line with
log_format = "json", in the proxy and in its accounting process alike (issue 16)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proxyapp.logs import setup_logging

from .support import SRC, ProxyProcess, free_port

pytestmark = pytest.mark.timeout(120)


def _run(code: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          cwd=tmp, timeout=90)


def _json_lines(stderr: str) -> list[dict]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "nothing logged"
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}\n{stderr[-3000:]}", pytrace=False)
    return out


def test_json_format_from_the_config_writes_one_json_object_per_line(tmp_path):
    """What `proxyapp` does with the configuration's log_format (Config.log_format), as a
    process of its own: every line on stderr parses, with the level, message and an exception."""
    cfg = tmp_path / "proxy.toml"
    cfg.write_text('log_level = "DEBUG"\nlog_format = "json"\n')
    r = _run(f"""
        from loguru import logger
        from proxyapp.config import Config
        from proxyapp.logs import setup_logging

        cfg = Config.load({str(cfg)!r})
        setup_logging(cfg.log_level, cfg.log_format)
        logger.debug("debug line")
        logger.info("stopping {{}}", "now")
        logger.warning('quotes " and\\nnewline')
        try:
            1 / 0
        except ZeroDivisionError:
            logger.exception("it failed")
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    recs = [e["record"] for e in _json_lines(r.stderr)]
    assert [(x["level"]["name"], x["message"]) for x in recs] == [
        ("DEBUG", "debug line"), ("INFO", "stopping now"), ("WARNING", 'quotes " and\nnewline'), ("ERROR", "it failed"),
    ]
    assert all(isinstance(x["time"]["timestamp"], float) and x["process"]["id"] > 0 for x in recs)
    assert recs[-1]["exception"]["type"] == "ZeroDivisionError"


def test_text_format_is_unchanged(tmp_path):
    r = _run("""
        from loguru import logger
        from proxyapp.logs import setup_logging

        setup_logging("INFO")
        logger.debug("hidden")
        logger.info("proxyapp ready")
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO    proxyapp ready\n", r.stderr), r.stderr


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="xml"):
        setup_logging("INFO", "xml")


def test_the_accounting_process_logs_in_the_proxys_format(tmp_path):
    """for_config passes log_format to the child (as log_level): its lines on the shared stderr are
    JSON too (an acc_log_request record through the log backend, and its SIGTERM notice)."""
    r = _run(f"""
        import asyncio, os, signal, time
        import fastsip
        from proxyapp.acc import AccConfig, for_config
        from proxyapp.config import Config
        from proxyapp.logs import setup_logging

        cfg = Config.from_dict({{"log_format": "json", "acc": {{"spool_dir": {str(tmp_path / "spool")!r},
                                                               "db_url": {str(tmp_path / "acc.db")!r}}}}})
        setup_logging(cfg.log_level, cfg.log_format)

        async def main():
            acc = for_config(AccConfig.from_dict(cfg.acc), cfg.log_level, cfg.log_format)
            await acc.start()
            req = fastsip.parse(b"OPTIONS sip:a@127.0.0.1 SIP/2.0\\r\\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\\r\\n"
                                b"From: <sip:b@127.0.0.1>;tag=f1\\r\\nTo: <sip:a@127.0.0.1>\\r\\nCall-ID: logs-1\\r\\n"
                                b"CSeq: 1 OPTIONS\\r\\nContent-Length: 0\\r\\n\\r\\n")
            acc.log_request(req, "200 OK", time.time())
            os.kill(acc._child.proc.pid, signal.SIGTERM)
            await asyncio.sleep(1.0)
            await acc.close()

        asyncio.run(main())
        print(os.getpid())
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    recs = [e["record"] for e in _json_lines(r.stderr)]
    child = [x for x in recs if x["process"]["id"] != int(r.stdout)]
    messages = [x["message"] for x in child]
    assert any(m.startswith("ACC: ") and "call_id=logs-1" in m for m in messages), messages
    assert any("SIGTERM received" in m for m in messages), messages


def test_proxyapp_runs_with_json_logs(tmp_path):
    """`proxyapp --config` with log_format = "json": every line it and its accounting process
    write is a JSON object (needs __main__.py to pass cfg.log_format to setup_logging and
    make_accounting's for_config)."""
    p = ProxyProcess(tmp_path, free_port(), 'log_format = "json"\n[acc]\nspool_dir = "spool"\ndb_url = "acc.db"\n',
                     "INFO", ("udp",))
    p.stop()
    recs = [e["record"] for e in _json_lines(p.log())]
    assert any(" ready " in f" {x['message']} " for x in recs) and any(x["message"] == "stopping" for x in recs), recs
