"""log backend: OpenSIPS acc log lines through loguru (stderr/file sinks, optional syslog).

Line format as OpenSIPS acc_log_request/acc_onreply write it:
  ACC: transaction answered: timestamp=...;method=INVITE;from_tag=...;to_tag=...;call_id=...;code=200;reason=OK;<extra>=...
  ACC: call missed: ...        ACC: request accounted: ...
  ACC: call ended: created=...;call_start_time=...;duration=...;ms_duration=...;setuptime=...;method=...
All times are milliseconds (timestamps in epoch ms).  A CDR line adds end_reason; every line ends
with record_id so a log reader can drop replayed duplicates.

acc.log_file is written directly, a batch per write() with the local time to the millisecond in
front of each line: a loguru call per record (a record dict, and with enqueue a pickled copy of it
for loguru's thread) cost more than building the record.  Syslog, and the proxy's own log when no
file is set, still go through loguru (a sink with enqueue for syslog, never blocking the loop).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import time
from typing import Any

from loguru import logger

from ..config import AccConfig, _hostport
from ..records import KIND_ACC, KIND_CDR, KIND_MISSED, KIND_REQUEST, AccRecord
from .base import Backend

PREFIX = {
    KIND_ACC: "ACC: transaction answered: ",
    KIND_MISSED: "ACC: call missed: ",
    KIND_CDR: "ACC: call ended: ",
    KIND_REQUEST: "ACC: request accounted: ",
}

# loguru records carrying this extra key are accounting lines (the file/syslog sinks filter on it).
EXTRA_KEY = "acc_line"


def _v(value: Any) -> str:
    return "" if value is None else str(value)


def format_line(r: AccRecord, extra_names: tuple[str, ...]) -> str:
    """The OpenSIPS-style line for one record (without the level/time prefix of the sink)."""
    parts: list[str] = []
    if r.kind == KIND_CDR:
        parts += [
            f"created={_v(r.created)}",
            f"call_start_time={_v(r.time)}",
            f"duration={_v(r.duration)}",
            f"ms_duration={_v(r.ms_duration)}",
            f"setuptime={_v(r.setuptime)}",
        ]
    else:
        parts.append(f"timestamp={_v(r.time)}")
    parts += [
        f"method={_v(r.method)}",
        f"from_tag={_v(r.from_tag)}",
        f"to_tag={_v(r.to_tag)}",
        f"call_id={_v(r.callid)}",
        f"code={_v(r.sip_code)}",
        f"reason={_v(r.sip_reason)}",
    ]
    parts += [f"{n}={_v(r.extra.get(n))}" for n in extra_names]
    if r.kind == KIND_CDR:
        parts.append(f"end_reason={_v(r.end_reason)}")
    parts.append(f"record_id={r.record_id}")
    return PREFIX[r.kind] + ";".join(parts)


def parse_line(line: str) -> tuple[str, dict[str, str]]:
    """Inverse of format_line for tests and log readers: (prefix, {key: value})."""
    idx = line.index("ACC: ")
    line = line[idx:]
    for p in PREFIX.values():
        if line.startswith(p):
            body = line[len(p) :].rstrip("\n")
            return p, dict(kv.split("=", 1) for kv in body.split(";"))
    raise ValueError(f"not an ACC line: {line!r}")


def _is_acc(record: Any) -> bool:
    return bool(record["extra"].get(EXTRA_KEY))


class LogBackend(Backend):
    """Writes each record as one loguru line (level acc.log_level) tagged for the acc sinks."""

    name = "log"

    def __init__(self, cfg: AccConfig) -> None:
        self.cfg = cfg
        self._sinks: list[int] = []
        self._logger = logger.bind(**{EXTRA_KEY: True})
        self._syslog: logging.Handler | None = None
        self._fd: int | None = None
        # loguru carries the lines when they have somewhere to go besides the file
        self._via_loguru = bool(cfg.log_syslog or not cfg.log_file)

    async def open(self) -> None:
        if self.cfg.log_file and self._fd is None:
            path = os.path.abspath(self.cfg.log_file)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self._sinks:
            return
        if self.cfg.log_syslog:
            addr = self.cfg.log_syslog_address
            if addr.startswith("/"):
                address: Any = addr
                socktype = None
            else:
                address = _hostport(addr, "log_syslog_address", 514)
                socktype = socket.SOCK_DGRAM
            handler = logging.handlers.SysLogHandler(
                address=address,
                facility=logging.handlers.SysLogHandler.facility_names[self.cfg.log_syslog_facility],
                socktype=socktype,
            )
            handler.ident = "proxyapp: "
            self._syslog = handler
            # enqueue: a stuck syslog daemon blocks a unix datagram socket; never in the event loop
            self._sinks.append(logger.add(handler, filter=_is_acc, format="{message}", level=self.cfg.log_level.upper(), enqueue=True))

    async def write(self, records: list[AccRecord]) -> None:
        names = self.cfg.extra_names
        lines = [format_line(r, names) for r in records]
        if self._fd is not None:
            now = time.time()
            stamp = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))}.{int(now * 1000) % 1000:03d} "
            data = memoryview("".join(stamp + line + "\n" for line in lines).encode())
            while data:  # one write() for the batch (O_APPEND: whole lines, in order)
                data = data[os.write(self._fd, data) :]
        if self._via_loguru:
            level = self.cfg.log_level.upper()
            for line in lines:
                self._logger.log(level, line)

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for sink in self._sinks:
            try:
                logger.remove(sink)
            except ValueError:
                pass
        self._sinks.clear()
        if self._syslog is not None:
            self._syslog.close()
            self._syslog = None
