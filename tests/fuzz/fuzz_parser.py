"""Coverage-guided fuzzing of both parser backends with atheris (libFuzzer).

Every input is parsed by both backends and every lazy attribute is read. A crash
is any exception other than ParseError, or the two backends disagreeing (value,
exception class or offset). Coverage feedback comes from the instrumented
pure-Python backend and, when the compiled backend was built with clang and
-fsanitize=fuzzer-no-link (see run_fuzz.sh), from its C code too.

    python tests/fuzz/fuzz_parser.py -max_total_time=600 fuzz-artifacts/work corpus/valid corpus/invalid
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["fastsip"]):
    from fastsip import _parser_py
    from fastsip._snapshot import snapshot
    from fastsip.errors import ParseError

from fastsip import _parser_c  # noqa: E402


def outcome(impl, data: bytes):
    try:
        msg = impl.parse(data)
    except ParseError as exc:
        return ("error", type(exc).__name__, exc.offset)
    snap = snapshot(msg)
    raw = bytes(msg)
    # The edits a proxy makes must work on anything that parsed with a readable Via.
    edited = None
    if isinstance(snap["via"], list) and snap["via"]:
        copy = msg.copy()
        copy.set_via_param("received", "192.0.2.1")
        copy.insert_header("Via", "SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKfuzz")
        copy.append_header("P-hint", "outbound")
        copy.pop_route() if isinstance(snap["route"], list) else None
        edited = bytes(copy)
    return ("ok", snap, raw, edited)


def test_one_input(data: bytes) -> None:
    a = outcome(_parser_py, data)
    b = outcome(_parser_c, data)
    if a != b:
        raise AssertionError(f"backends disagree on {data!r}:\npy={a!r}\nc ={b!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
