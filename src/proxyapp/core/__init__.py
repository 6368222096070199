"""The sans-IO proxy core: RFC 3261 §16 proxy rules on top of the §17 transactions.

One module per concern, each importing only those listed before it:

- addresses.py  Target, next hop from a URI or destination (RFC 3263 §4)
- sockets.py    our sockets' Via and Record-Route bytes; check_self's tables
- context.py    per-request state: RequestState, TxContext ("cell"), Branch, the Resolve action
- stats.py      counters
- hooks.py      the contracts the core calls out to: Router (the script), AccObserver (accounting)
- base.py       shared state, the transaction tables' bookkeeping, the interface between rule modules
- requests.py   §16.3-16.6: matching, Max-Forwards, loops, Route/strict routing, Record-Route, Via
- responses.py  §16.7: the response context, best final, Timer C and transport outcomes
- cancel.py     §16.10 CANCEL, §9.1 and the hop-by-hop ACK of §17.1.1.3
- stateless.py  §16.11 stateless forwarding of requests and responses
- replies.py    local replies (sl, t_reply, 100 Trying) and 400 for malformed requests
- accounting.py the AccObserver calls
- proxy.py      ProxyCore: the rule modules combined behind the five events
"""

from .addresses import ScriptError, Target, parse_destination
from .context import MAGIC, Branch, RequestState, Resolve, TxContext
from .hooks import AccObserver, Router
from .proxy import ProxyCore
from .sockets import LocalSocket
from .stats import Stats

__all__ = [
    "MAGIC",
    "AccObserver",
    "Branch",
    "LocalSocket",
    "ProxyCore",
    "RequestState",
    "Resolve",
    "Router",
    "ScriptError",
    "Stats",
    "Target",
    "TxContext",
    "parse_destination",
]
