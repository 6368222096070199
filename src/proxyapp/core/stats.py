"""The core's counters: what an operator looks at (``proxyapp ctl stats``, Prometheus) and the
tests assert on.

Each event costs one integer increment on a slot (a few tens of nanoseconds); everything that
can be derived (totals, transactions in use, active dialogs) is computed when the statistics are
read, never on the hot path. ``groups()`` names them as OpenSIPS does (core, tm, sl and dialog
statistics of ``opensips-cli -x mi get_statistics all``), plus the counters OpenSIPS lacks.
"""

from __future__ import annotations

CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "6xx")


class Stats:
    """Counters an operator looks at (and tests assert on)."""

    __slots__ = (
        "received", "requests", "responses", "retransmissions", "absorbed_acks", "dropped",
        "bad_requests", "forwarded", "stateless", "script_errors", "sent", "keepalives",
        # dropped, split: the responses among them; requests the script neither relayed nor answered
        "drop_replies", "script_drops", "bad_msg_hdr",
        # tm: transactions created; replies the proxy made (t_reply) and relayed; CANCELs sent
        "uas", "uac", "local_replies", "relayed_replies", "stateless_replies",
        # final status class per server transaction (index status // 100), sl replies per class
        "tx_final", "sl_replies",
        # dialogs confirmed by a relayed 2xx to an initial INVITE; 503s while stopping
        "processed_dialogs", "draining_rejects",
        # responses, and ACKs / CANCELs, matching no transaction (or dialog, for an ACK) dropped
        # by the stateless_responses setting
        "stray_replies", "stray_requests",
        # client transactions failed at once by an ICMP error (RFC 3261 §18.4; proxyapp.icmp)
        "icmp_failures",
    )

    # Declared for the type checker only (annotations, no class attributes: the slots hold them).
    received: int
    requests: int
    responses: int
    retransmissions: int
    absorbed_acks: int
    dropped: int
    bad_requests: int
    forwarded: int
    stateless: int
    script_errors: int
    sent: int
    keepalives: int
    drop_replies: int
    script_drops: int
    bad_msg_hdr: int
    uas: int
    uac: int
    local_replies: int
    relayed_replies: int
    stateless_replies: int
    tx_final: list[int]
    sl_replies: list[int]
    processed_dialogs: int
    draining_rejects: int
    stray_replies: int
    stray_requests: int
    icmp_failures: int

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)
        self.tx_final = [0] * 7
        self.sl_replies = [0] * 7

    def as_dict(self) -> dict[str, int]:
        """The raw counters (the per-class lists flattened as ``tx_final_2xx`` ...)."""
        out: dict[str, int] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, list):
                for i, cls in enumerate(CLASSES, 1):
                    out[f"{name}_{cls}"] = value[i]
            else:
                out[name] = value
        return out

    def groups(self, inuse_transactions: int, active_dialogs: int) -> dict[str, dict[str, int]]:
        """The statistics under OpenSIPS' group and counter names, plus proxyapp's own.

        core: rcv_requests / rcv_replies (parsed messages), fwd_requests (branches sent, stateful
        or stateless), fwd_replies (responses passed upstream, stateful or stateless),
        drop_requests (malformed requests that could not be answered, and requests the script
        dropped), drop_replies, err_requests (requests answered 400, and script errors),
        bad_msg_hdr (messages refused for a malformed start line or header).
        tm: UAS_transactions, UAC_transactions, inuse_transactions, 2xx_transactions ...
        6xx_transactions (server transactions by final class), local_replies, relayed_replies.
        sl: 1xx_replies ... 6xx_replies, sent_replies (stateless replies).
        dialog: active_dialogs, processed_dialogs."""
        tx_final = self.tx_final
        sl = self.sl_replies
        core = {
            "rcv_requests": self.requests,
            "rcv_replies": self.responses,
            "fwd_requests": self.forwarded + self.stateless,
            "fwd_replies": self.relayed_replies + self.stateless_replies,
            "drop_requests": self.dropped - self.drop_replies + self.script_drops,
            "drop_replies": self.drop_replies,
            "err_requests": self.bad_requests + self.script_errors,
            "bad_msg_hdr": self.bad_msg_hdr,
            "retransmissions": self.retransmissions,
            "absorbed_acks": self.absorbed_acks,
            "keepalives": self.keepalives,
            "draining_rejects": self.draining_rejects,
            "stray_replies": self.stray_replies,
            "stray_requests": self.stray_requests,
        }
        tm = {
            "UAS_transactions": self.uas,
            "UAC_transactions": self.uac,
            "inuse_transactions": inuse_transactions,
            **{f"{cls}_transactions": tx_final[i] for i, cls in enumerate(CLASSES, 1) if i >= 2},
            "local_replies": self.local_replies,
            "relayed_replies": self.relayed_replies,
            "icmp_failures": self.icmp_failures,
        }
        sl_group = {f"{cls}_replies": sl[i] for i, cls in enumerate(CLASSES, 1)}
        sl_group["sent_replies"] = sum(sl)
        dialog = {"active_dialogs": active_dialogs, "processed_dialogs": self.processed_dialogs}
        return {"core": core, "tm": tm, "sl": sl_group, "dialog": dialog}
