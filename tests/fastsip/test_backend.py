"""Which backend loaded, and the public API surface both must offer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import fastsip
from fastsip import _parser_py

PUBLIC_NAMES = [
    "parse", "parse_uri", "make_response", "Message", "Request", "Response", "Headers",
    "SipURI", "AbsoluteURI", "Via", "NameAddr", "CSeq",
]


def test_compiled_backend_is_the_default() -> None:
    # Fails when the Cython extension silently did not build or load.
    if os.environ.get("FASTSIP_NO_EXTENSIONS"):
        assert fastsip.IMPLEMENTATION == "py"
    else:
        assert fastsip.IMPLEMENTATION == "c"
        assert fastsip.parse.__module__ == "fastsip._parser_c" or "cython" in type(fastsip.parse).__name__


def test_backend_modules_offer_the_same_names(impl) -> None:
    for name in PUBLIC_NAMES:
        assert hasattr(impl, name), name
    assert impl.IMPLEMENTATION in ("c", "py")


def test_package_exports_exactly_all() -> None:
    exported = {n for n in dir(fastsip) if not n.startswith("_")}
    assert set(fastsip.__all__) - {"__version__"} <= exported
    for name in fastsip.__all__:
        assert getattr(fastsip, name) is not None


def test_errors_are_value_errors_shared_by_both_backends() -> None:
    assert issubclass(fastsip.ParseError, ValueError)
    for cls in (fastsip.ViaError, fastsip.NameAddrError, fastsip.CSeqError, fastsip.NumberError):
        assert issubclass(cls, fastsip.HeaderValueError)
    assert issubclass(fastsip.TruncatedBody, fastsip.IncompleteMessage)
    assert fastsip.MessageTooLarge("x", 1).status_hint == 513
    assert fastsip.StartLineError("x", 1).status_hint == 400


def test_no_extensions_switch_gives_pure_python() -> None:
    code = "import fastsip; print(fastsip.IMPLEMENTATION)"
    env = dict(os.environ, FASTSIP_NO_EXTENSIONS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "py"


def test_public_api_passes_mypy(tmp_path) -> None:
    pytest.importorskip("mypy")
    usage = tmp_path / "usage.py"
    usage.write_text(textwrap.dedent('''
        import fastsip

        def summary(data: bytes) -> str:
            msg = fastsip.parse(data)
            via = msg.via[0]
            port: int | None = via.port
            frm = msg.from_
            tag = frm.tag if frm is not None else None
            cseq = msg.cseq
            seq = cseq.seq if cseq is not None else 0
            if isinstance(msg, fastsip.Request):
                return f"{msg.method} {msg.uri.host} {via.branch} {port} {tag} {seq}"
            return f"{msg.status} {msg.reason} {len(bytes(msg))}"

        try:
            summary(b"")
        except fastsip.ParseError as exc:
            offset: int = exc.offset
    '''))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(usage)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
