"""Write corpus/valid/NAME.json, the parsed fields of each NAME.sip, from the reference backend.

Run after adding or changing a corpus message:  python corpus/make_golden.py
Review the diff: the golden files are what the tests hold both backends to.
"""

from __future__ import annotations

import json
import pathlib
import sys

from fastsip import _parser_py
from fastsip._snapshot import snapshot

HERE = pathlib.Path(__file__).resolve().parent


def golden(data: bytes) -> str:
    msg = _parser_py.parse(data)
    return json.dumps(snapshot(msg), indent=1, ensure_ascii=True, sort_keys=False) + "\n"


def main() -> int:
    count = 0
    for path in sorted((HERE / "valid").glob("*.sip")):
        path.with_suffix(".json").write_text(golden(path.read_bytes()))
        count += 1
    print(f"wrote {count} golden files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
