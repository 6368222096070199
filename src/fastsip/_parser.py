"""The one place that picks the backend: compiled (Cython) when built, else the pure-Python twin."""

from __future__ import annotations

import os

if os.environ.get("FASTSIP_NO_EXTENSIONS"):
    from . import _parser_py as _impl
else:
    try:
        from . import _parser_c as _impl  # type: ignore[no-redef]
    except ImportError:  # not built (no compiler at install time, PyPy, ...)
        import warnings

        from . import _parser_py as _impl

        # pip hides the build's own warning (setup.py) unless -v: say it where it is seen.
        # FASTSIP_NO_EXTENSIONS=1 chooses the pure-Python backend silently.
        warnings.warn(
            "fastsip: the compiled parser is not installed (no C compiler or Cython when it was "
            "built); using the pure-Python backend, several times slower. Reinstall with a compiler "
            "(pip install --force-reinstall --no-binary fastsip fastsip) or use a wheel.",
            RuntimeWarning,
            stacklevel=2,
        )

IMPLEMENTATION: str = _impl.IMPLEMENTATION
parse = _impl.parse
parse_uri = _impl.parse_uri
split_values = _impl._split_elements
make_response = _impl.make_response
Message = _impl.Message
Request = _impl.Request
Response = _impl.Response
Headers = _impl.Headers
SipURI = _impl.SipURI
AbsoluteURI = _impl.AbsoluteURI
Via = _impl.Via
NameAddr = _impl.NameAddr
CSeq = _impl.CSeq
