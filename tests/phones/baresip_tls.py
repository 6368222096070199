"""baresip over TLS: the Phone driver of baresip.py with a ``;transport=tls`` account.

baresip 1.0 listens for SIP over TLS on its sip_listen port + 1 (baresip.free_sip_port keeps that
port free) and uses TLS for an account whose URI says ``;transport=tls``; ``sip_cafile`` is the
CA list of its TLS client and ``sip_certificate`` (optional) the certificate it presents.
Everything else (ctrl_tcp, events, waits) is Phone's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .baresip import Phone


class TlsPhone(Phone):
    """A Phone whose account, outbound proxy and calls use SIP over TLS (RFC 3261 §26.2)."""

    def __init__(self, workdir: Path, user: str, *, cafile: Path, certificate: Path | None = None, **kwargs: Any) -> None:
        kwargs.pop("transport", None)
        super().__init__(workdir, user, transport="tcp", **kwargs)  # (Phone checks udp/tcp)
        self.transport = "tls"
        self.cafile = cafile
        self.certificate = certificate

    @property
    def tls_port(self) -> int:
        return self.sip_port + 1

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@127.0.0.1:{self.tls_port};transport=tls"

    def account_line(self, regint: int) -> str:
        line = f"<sip:{self.user}@{self.domain};transport=tls>;answermode=manual;audio_codecs=pcmu,pcma;regint={regint}"
        if self.proxy is not None:
            line += f';outbound="sip:{self.proxy};transport=tls"'
        if self.password is not None:
            line += f";auth_pass={self.password}"
        return line

    def _config(self) -> str:
        extra = [f"sip_cafile\t\t{self.cafile}"]
        if self.certificate is not None:
            extra.append(f"sip_certificate\t\t{self.certificate}")
        return super()._config() + "\n".join(extra) + "\n"

    def dial(self, uri: str) -> None:
        """Call ``uri``; baresip appends the account's ``;transport=tls`` itself."""
        if uri.endswith(";transport=tls"):
            uri = uri[: -len(";transport=tls")]
        self.command("dial", uri)
