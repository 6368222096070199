"""proxyapp accounting (OpenSIPS acc): do_accounting marks, CDRs from dialogs, log/db/aaa/evi backends.

Integration contract (what the proxy calls; every call after start() is synchronous, cheap and
never blocks. The proxy events are queued and processed in a batch within 5 ms, each with its own
timestamp and in order; their records go to a bounded per-backend queue drained by background
writer tasks):

    from proxyapp.acc import AccConfig, Accounting, AccMark
    acc = Accounting(AccConfig.from_dict(config.get("acc", {})))  # ValueError names a bad key
    # or process.AccountingProcess(cfg): the same calls, the engine in a child process
    # ([acc] engine = "process", what proxyapp runs by default)
    await acc.start()     # opens backends, replays spools, restores the open-dialog journal
    await acc.close()     # SIGTERM path: flush queues to the backends or to the spool
    # With the process engine the child outlives SIGTERM/SIGINT sent to the whole service (systemd
    # KillMode=control-group, Ctrl-C): it serves until close() (at most process.STOP_WAIT_S, 30 s,
    # after the signal), so the proxy can drain first and then close; no record is lost.

    # script verbs
    mark = AccMark.parse(types="db|log", flags="cdr|missed", table="my_acc")   # do_accounting
    mark.update("db", "missed")      # do_accounting again (e.g. failure route re-arms missed)
    mark.drop()                      # drop_accounting()
    acc.log_request(request, "200 Comment", ts)          # acc_log_request(comment)
    acc.db_request(request, "Comment", "my_table", ts)   # acc_db_request(comment, table)

    # proxy events (ts = time.time() float seconds; request/response are fastsip objects)
    acc.observe_request(request, source_addr, ts)   # every request received
    acc.observe_response(response, ts)              # every response forwarded upstream
    acc.transaction_completed(mark_or_None, request, status, reason, to_tag, source_addr, ts)
        # every server transaction, when its final response is sent upstream (also local
        # 408/487/483/500); mark None when not marked (dialog tracking still sees BYEs)
    acc.branch_failed(mark, request, status, reason, to_tag, source_addr, ts)   # optional:
        # a forwarded INVITE branch failed, before the failure route (per-destination missed)

    acc.stats()   # {backend_name: {stat: number}} for "log", "db", "aaa", "evi", every key always there:
        #   written             records written to the backend directly (since start)
        #   failed              records whose write attempt failed (then spooled: not lost)
        #   queued              records waiting in memory (the queue and the batch being written)
        #   spooled             records appended to the backend's durable spool (since start)
        #   spool_pending       records in the spool waiting for replay (now)
        #   spool_oldest_age_s  seconds since the oldest of those was spooled; 0 when empty
        #   replayed            records written from the spool (since start)
        #   lost                records not even spooled (a disk error); should stay 0
        # plus "dialogs": open CDR dialogs (a number), "pending_calls": initial INVITEs not
        # completed yet (at most max_pending_calls), "pending_evicted": those forgotten past
        # that cap; and with the process engine
        # "process": {restarts, events_buffered, bytes_in_pipe_buffer}; the child's report is at
        # most a second old.
    acc.subscribe("E_ACC_CDR", cb)    # evi in-process subscriber: cb(event_name, params)

Semantics and file layout: records.py (fields, milliseconds), marks.py, dialog.py (CDRs),
engine.py (queues, spool, exactly-once, SIGKILL worst case), backends/*, schema.py, cli.py.
"""

from typing import Any

from .config import AccConfig
from .engine import Accounting
from .marks import AccMark
from .records import AccRecord

__all__ = ["AccConfig", "AccMark", "AccRecord", "Accounting", "for_config"]


def for_config(cfg: AccConfig, log_level: str = "INFO", log_format: str = "text") -> Any:
    """The accounting cfg.engine names: an AccountingProcess ("process", the engine in a child
    process that logs at log_level in log_format, "text" or "json", as the proxy does; see
    proxyapp.logs.setup_logging) or an Accounting ("inline"). Both take the same calls."""
    if cfg.engine == "process":
        from .process import AccountingProcess

        return AccountingProcess(cfg, log_level, log_format)
    return Accounting(cfg)
