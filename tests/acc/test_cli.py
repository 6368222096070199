"""`proxyapp acc` commands (proxyapp.acc.cli.main): migrate from a config file, schema, spool."""

import sqlite3

from proxyapp.acc.cli import main
from proxyapp.acc.records import AccRecord
from proxyapp.acc.spool import Spool


def test_migrate_from_config_with_custom_extra_and_table(tmp_path, capsys):
    db = tmp_path / "x.db"
    cfg = tmp_path / "proxy.toml"
    cfg.write_text(f'listen = ["udp:127.0.0.1:5060"]\n[acc]\ndb_url = "{db}"\nextra = {{ caller_ip = "$si", pai = "$hdr(P-Asserted-Identity)" }}\n')
    assert main(["migrate", "--config", str(cfg), "--table", "my_acc"]) == 0
    conn = sqlite3.connect(db)
    for t in ("acc", "missed_calls", "my_acc"):
        cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')]
        assert cols[-2:] == ["caller_ip", "pai"] and "record_id" in cols
    assert "schema up to date" in capsys.readouterr().out


def test_bad_config_exits_2_naming_the_key(tmp_path, capsys):
    cfg = tmp_path / "proxy.toml"
    cfg.write_text('[acc]\nbatch_max = -1\n')
    assert main(["migrate", "--config", str(cfg)]) == 2
    assert "acc.batch_max" in capsys.readouterr().err


def test_schema_and_spool_commands(tmp_path, capsys):
    assert main(["schema", "--dialect", "postgres"]) == 0
    out = capsys.readouterr().out
    assert 'CREATE TABLE IF NOT EXISTS "acc"' in out and '"time" BIGINT NOT NULL' in out
    cfg = tmp_path / "proxy.toml"
    cfg.write_text(f'[acc]\nspool_dir = "{tmp_path / "spool"}"\n')
    Spool(tmp_path / "spool", "db").append([AccRecord(kind="acc", types=("db",), table=None, method="BYE", from_tag="a", to_tag="b", callid="c", sip_code=200, sip_reason="OK", time=1)])
    assert main(["spool", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.splitlines() == ["log: 0", "db: 1", "aaa: 0", "evi: 0"]
    # with workers, each one's spools too
    rec = AccRecord(kind="acc", types=("log",), table=None, method="BYE", from_tag="a", to_tag="b", callid="c", sip_code=200, sip_reason="OK", time=1)
    Spool(tmp_path / "spool" / "worker-1", "log").append([rec, rec])
    Spool(tmp_path / "spool" / "worker-0", "log")
    assert main(["spool", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "log: 0", "db: 1", "aaa: 0", "evi: 0",
        "worker-0 log: 0", "worker-0 db: 0", "worker-0 aaa: 0", "worker-0 evi: 0",
        "worker-1 log: 2", "worker-1 db: 0", "worker-1 aaa: 0", "worker-1 evi: 0",
    ]
