"""The routing-script API: loading a script module and the context with OpenSIPS-like verbs.

A script is a Python module with ``route(msg, ctx)`` (the request route, like opensips.cfg's
``route{}``). ``msg`` is the fastsip Request (edits show in what is forwarded); ``ctx`` carries
the verbs. Failure, reply and branch routes are plain functions of the same module, armed per
transaction with ``ctx.t_on_failure(fn_or_name)``, ``ctx.t_on_reply(...)``, ``ctx.t_on_branch(...)``.
A module-level ``onreply_route(msg, ctx)`` (if present) sees every response of every stateful
transaction, like OpenSIPS' unnamed onreply_route. Any exception in a route is logged with its
traceback and the request is answered 500; it never takes the proxy down.

Verbs (OpenSIPS names): sl_send_reply(code, reason), sl_reply_error(), t_newtran(),
t_check_trans(), t_reply(code, reason), t_relay(dest=None), forward(dest=None), set_dst_uri(uri),
t_on_failure/t_on_reply/t_on_branch(route), t_was_cancelled(), record_route(), loose_route(),
has_totag(), is_method("INVITE|BYE"), is_myself(uri_or_host=R-URI), append_hf("Name: value"),
remove_hf(name), mf_process_maxfwd_header(70), do_accounting(types, flags, table),
acc_log_request(comment), acc_db_request(comment, table), log(text, level),
www_authorize(realm) / proxy_authorize(realm) (codes: proxyapp.auth.AUTHORIZED, INVALID_USER, ...),
www_challenge(realm, qop) / proxy_challenge(realm, qop), consume_credentials(); ctx.auth_user;
check_from() / check_to() (uri); allow_source_address(group) / check_address(group, ip, port, proto)
(permissions, the [permissions] table).
Facts: ctx.ruri (assignable, $ru), ctx.source_ip ($si), ctx.source_port ($sp), ctx.proto,
ctx.params (the [script_params] table), ctx.t_reply_code and ctx.reply (failure/reply routes),
ctx.branch (branch route). Destinations: "udp:IP:PORT", "tcp:host[:port]", "host[:port]" or a
SIP URI.
"""

from __future__ import annotations

import sys
from pathlib import Path
import dataclasses
from types import ModuleType

import fastsip
from loguru import logger

from .acc import AccMark
from .auth import Auth, Result as AuthResult
from .location import Binding, Location
from .permissions import Group, Permissions, same_host, same_user
from .registrar import RegistrarConfig, aor_of, process_register, request_aor
from .core import Branch, ProxyCore, RequestState, ScriptError, Target, TxContext
from .core.addresses import URI
from .core.context import Destination, Route, TxKey


_METHOD_SETS: dict[str, frozenset[str]] = {}  # is_method argument -> the methods it names
_MARKS: dict[tuple[str, str, str | None], AccMark] = {}  # do_accounting arguments -> parsed template


class ScriptLoadError(Exception):
    """The script file cannot be loaded or has no ``route`` function."""


@dataclasses.dataclass
class Services:
    """The services the verbs use beside the core: the location store (save, lookup,
    registered) and the registrar's rules. ``node`` is this proxy's own URI, written into the
    bindings it saves so another node sharing the store routes their calls through it."""

    location: Location | None = None
    registrar: RegistrarConfig = dataclasses.field(default_factory=RegistrarConfig)
    node: str = ""
    auth: Auth | None = None  # digest authentication ([auth]); None: the auth verbs raise ScriptError
    permissions: Permissions | None = None  # [permissions], built at the first allow_source_address()


class Script:
    """A loaded routing script."""

    def __init__(self, module: ModuleType, path: str | None) -> None:
        self.module = module
        self.path = path
        route = getattr(module, "route", None)
        if not callable(route):
            raise ScriptLoadError(f"script {path or getattr(module, '__name__', '?')}: no route(msg, ctx) function")
        self.route = route
        self.onreply_route: Route | None = getattr(module, "onreply_route", None)
        self.services = Services()  # set by whoever runs the script with a registrar
        self.proxy: ProxyCore | None = None  # set by the Proxy that runs this script

    @classmethod
    def load(cls, path: str | None) -> "Script":
        """Load a script file (None: the built-in default script). Raises ScriptLoadError."""
        if path is None:
            from . import default_script

            return cls(default_script, None)
        p = Path(path)
        if not p.is_file():
            raise ScriptLoadError(f"script {path}: no such file")
        name = f"proxyapp_script_{abs(hash(str(p.resolve()))):x}"
        # Compiled from the source each time, never from __pycache__: a reload right after an
        # edit must not run stale bytecode (the cache compares mtimes in whole seconds).
        module = ModuleType(name)
        module.__file__ = str(p)
        try:
            code = compile(p.read_bytes(), str(p), "exec")
            sys.modules[name] = module
            exec(code, module.__dict__)
        except Exception as exc:
            raise ScriptLoadError(f"script {path}: {type(exc).__name__}: {exc}") from exc
        return cls(module, str(p))

    def resolve(self, route: object) -> Route:
        """A route given as a function or as the name of a function of the script."""
        if callable(route):
            return route
        fn: object = getattr(self.module, str(route), None)
        if not callable(fn):
            raise ScriptError(f"no route named {route!r} in the script")
        return fn

    # -------------------------------------------------------------- running routes

    def handle_request(
        self, msg: fastsip.Request, source: Target, reply_dest: Target, key: TxKey, loop_hash: int, routed: bool,
        dst_uri: str | None,
    ) -> None:
        """The core's Router call: the request route for a request that is not a retransmission."""
        assert self.proxy is not None  # bound by the Proxy before any message arrives
        ctx = ScriptContext(self.proxy, msg, source, reply_dest, key)
        ctx.loop_hash = loop_hash
        ctx.routed = routed
        if dst_uri is not None:
            ctx.dst_uri = dst_uri
        proxy = ctx.proxy
        try:
            self.route(msg, ctx)
        except Exception:
            proxy.stats.script_errors += 1
            logger.exception("routing script failed on {} {} call-id={}", msg.method, msg.raw_uri, msg.call_id)
            if msg.method != "ACK":
                self._answer_500(ctx)
            return
        tctx = ctx.tctx
        if tctx is not None and not tctx.branches and not tctx.final_sent:
            # A transaction nobody answers would live forever: say so instead.
            logger.warning("script created a transaction for {} but neither relayed nor replied", msg.method)
            proxy.t_reply(tctx, 500, "Server Internal Error")

    def _answer_500(self, ctx: "ScriptContext") -> None:
        proxy = ctx.proxy
        try:
            tctx = ctx.tctx
            if tctx is not None:
                if not tctx.final_sent and not tctx.branches:
                    proxy.t_reply(tctx, 500, "Server Internal Error")
            elif not ctx.replied:
                proxy.sl_reply(ctx.msg, ctx.reply_dest, 500, "Server Internal Error", source=ctx.source, mark=ctx.acc_mark)
        except Exception:
            logger.exception("cannot answer 500 after a script error")

    def _bound(self) -> ProxyCore:
        proxy = self.proxy
        assert proxy is not None  # bound by the Proxy before any message arrives
        return proxy

    def run_failure(self, tctx: TxContext, route: Route, best: Branch) -> None:
        proxy = self._bound()
        ctx = ScriptContext.for_transaction(proxy, tctx)
        ctx.reply = best.final
        ctx.reply_code = best.final_status
        tctx.in_failure = True
        try:
            self.resolve(route)(tctx.request, ctx)
        except Exception:
            proxy.stats.script_errors += 1
            logger.exception("failure route failed for call-id={}", tctx.request.call_id)
        finally:
            tctx.in_failure = False

    def run_reply(self, tctx: TxContext, resp: fastsip.Response, branch: Branch) -> object:
        proxy = self._bound()
        ctx = ScriptContext.for_transaction(proxy, tctx)
        ctx.reply = resp
        ctx.reply_code = resp.status
        try:
            result = None
            if self.onreply_route is not None:
                result = self.onreply_route(resp, ctx)
            if tctx.reply_route is not None:
                result = self.resolve(tctx.reply_route)(resp, ctx)
            return result
        except Exception:
            proxy.stats.script_errors += 1
            logger.exception("reply route failed for call-id={}", tctx.request.call_id)
            return None

    def run_branch(self, tctx: TxContext, branch: Branch) -> None:
        proxy = self._bound()
        ctx = ScriptContext.for_transaction(proxy, tctx)
        ctx.branch = branch
        try:
            self.resolve(tctx.branch_route)(tctx.request, ctx)
        except Exception:
            proxy.stats.script_errors += 1
            logger.exception("branch route failed for call-id={}", tctx.request.call_id)


class ScriptContext(RequestState):
    """What a route gets beside the message: the verbs, named as in OpenSIPS."""

    __slots__ = ("proxy", "replied", "reply", "reply_code", "branch", "params", "routed", "__dict__")

    def __init__(self, proxy: ProxyCore, msg: fastsip.Request, source: Target, reply_dest: Target, key: TxKey) -> None:
        # RequestState.__init__'s assignments written out (a Python frame less per request);
        # tests/proxy/test_script_context.py checks that every slot is set.
        self.msg = msg
        self.source = source
        self.reply_dest = reply_dest
        self.key = key
        self.tctx = None
        self.acc_mark = None
        self.record_route_flag = False
        self.maxfwd_done = False
        self.failure_route = None
        self.reply_route = None
        self.branch_route = None
        self.dst_uri = None
        self.loop_hash = None
        self.forks = None
        self.proxy = proxy
        self.replied = False
        self.reply: fastsip.Response | None = None  # the winning response, in a failure or reply route
        self.reply_code = 0
        self.branch: Branch | None = None
        self.params = proxy.cfg.script_params
        self.routed = False  # the request arrived with a Route set (the core removed our entries)

    @classmethod
    def for_transaction(cls, proxy: ProxyCore, tctx: TxContext) -> "ScriptContext":
        assert tctx.key is not None  # set when the context is created
        ctx = cls(proxy, tctx.request, tctx.source, tctx.reply_dest, tctx.key)
        ctx.tctx = tctx
        ctx.acc_mark = tctx.acc_mark
        ctx.maxfwd_done = True
        ctx.record_route_flag = tctx.record_route
        return ctx


    # ---------------------------------------------------------- facts about the request

    @property
    def source_ip(self) -> str:
        """$si"""
        return self.source.host

    @property
    def source_port(self) -> int:
        """$sp"""
        return self.source.port

    @property
    def proto(self) -> str:
        """$proto"""
        return self.source.transport

    @property
    def ruri(self) -> str:
        """$ru (assignable)."""
        return self.msg.raw_uri

    @ruri.setter
    def ruri(self, value: str) -> None:
        self.msg.set_uri(value)

    def has_totag(self) -> bool:
        to = self.msg.to
        return to is not None and to.tag is not None

    def is_method(self, methods: str) -> bool:
        """is_method("INVITE") or is_method("INVITE|BYE")."""
        wanted = _METHOD_SETS.get(methods)
        if wanted is None:
            wanted = _METHOD_SETS[methods] = frozenset(x.strip().upper() for x in methods.split("|"))
        return self.msg.method in wanted

    def is_myself(self, what: str | URI | None = None) -> bool:
        """OpenSIPS ``uri == myself``: a URI object or text, ``host[:port]``; default the R-URI."""
        proxy = self.proxy
        if what is None:
            what = self.msg.uri
        if isinstance(what, str):
            text = what.strip().strip("<>")
            if text.lower().startswith(("sip:", "sips:")):
                what = fastsip.parse_uri(text)
            else:
                host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
                return proxy.is_myself(host, int(port) if port else None)
        return proxy.is_myself_uri(what)

    def t_was_cancelled(self) -> bool:
        return self.tctx is not None and self.tctx.cancelled

    @property
    def t_reply_code(self) -> int:
        """$T_reply_code in a failure route."""
        return self.reply_code

    # ---------------------------------------------------------- edits

    def append_hf(self, text: str, value: str | None = None) -> None:
        """append_hf("P-hint: outbound\\r\\n") or append_hf("P-hint", "outbound")."""
        if value is None:
            name, sep, value = text.rstrip("\r\n").partition(":")
            if not sep:
                raise ScriptError(f"append_hf: {text!r} is not 'Name: value'")
        else:
            name = text
        self.msg.append_header(name.strip(), value.strip())

    def remove_hf(self, name: str) -> int:
        return self.msg.remove_header(name)

    def mf_process_maxfwd_header(self, max_value: int = 70) -> bool:
        """False when Max-Forwards is 0 (reply 483); else decrement it (add max_value when absent)."""
        if self.maxfwd_done:
            return True
        ok = self.proxy.process_maxfwd(self.msg, int(max_value))
        if ok:
            self.maxfwd_done = True
        return ok

    def record_route(self) -> bool:
        """Add our Record-Route (``<sip:ADDR;lr>``) when the request is relayed."""
        self.record_route_flag = True
        if self.tctx is not None:
            self.tctx.record_route = True
        return True

    def loose_route(self) -> bool:
        """RFC 3261 §16.4: True when the request arrived with a Route set. The core has already
        removed the Route values naming us (and undone a strict router's Request-URI) for every
        request, so only the answer is left to the script."""
        return self.routed

    # ---------------------------------------------------------- replies and transactions

    def sl_send_reply(self, code: int, reason: str | None = None) -> bool:
        self.proxy.sl_reply(self.msg, self.reply_dest, int(code), reason, source=self.source, mark=self._reply_mark())
        self.replied = True
        return True

    def _reply_mark(self) -> object | None:
        """The accounting mark for a reply the script makes: none after a failed authorization
        unless [acc] account_auth_failures (a stranger's challenged attempts are no records)."""
        if self._auth_failed:
            acc = self.proxy.acc
            if acc is None or not getattr(acc.cfg, "account_auth_failures", False):  # type: ignore[attr-defined]
                return None
        return self.acc_mark

    def sl_reply_error(self) -> bool:
        return self.sl_send_reply(500, "Server Internal Error")

    def t_newtran(self) -> bool:
        """Create the server transaction now (an INVITE gets its 100 at once)."""
        if self.msg.method == "ACK":
            raise ScriptError("t_newtran on an ACK")
        if self.tctx is not None:
            return False
        self.proxy.new_server_tx(self)
        return True

    def t_check_trans(self) -> bool:
        """CANCEL: True when the INVITE it cancels has a transaction. ACK / others: a matching one."""
        msg = self.msg
        method = msg.method
        target = "INVITE" if method in ("CANCEL", "ACK") else method
        key = self.proxy.server_key(msg, msg.via[0], target)
        return key in self.proxy.server_txs

    def t_reply(self, code: int, reason: str | None = None) -> bool:
        if self.msg.method == "ACK":
            raise ScriptError("t_reply on an ACK")
        tctx = self.tctx or self.proxy.new_server_tx(self, send_trying=False)
        if tctx.final_sent and int(code) >= 200:
            return False
        if int(code) >= 200 and self._reply_mark() is None:
            tctx.acc_mark = None
        self.proxy.t_reply(tctx, int(code), reason)
        self.replied = True
        return True

    def t_relay(self, dest: str | None = None) -> bool:
        """Forward statefully (to ``dest``: 'udp:IP:PORT', 'tcp:host:port', a SIP URI, or host)."""
        return self.proxy.relay(self, dest)

    def forward(self, dest: str | None = None) -> bool:
        """Forward statelessly (RFC 3261 §16.11)."""
        return self.proxy.forward_stateless(self, dest)

    def set_dst_uri(self, uri: str) -> None:
        """$du: where t_relay sends, without touching the Request-URI."""
        self.dst_uri = uri

    @property
    def _script(self) -> Script:
        """The script this context runs (named routes are looked up in it)."""
        script = self.proxy.script
        assert isinstance(script, Script)  # a ScriptContext only exists for a Script's routes
        return script

    def t_on_failure(self, route: object) -> None:
        self.failure_route = self._script.resolve(route)
        if self.tctx is not None:
            self.tctx.failure_route = self.failure_route

    def t_on_reply(self, route: object) -> None:
        self.reply_route = self._script.resolve(route)
        if self.tctx is not None:
            self.tctx.reply_route = self.reply_route

    def t_on_branch(self, route: object) -> None:
        self.branch_route = self._script.resolve(route)
        if self.tctx is not None:
            self.tctx.branch_route = self.branch_route

    # ---------------------------------------------------------- accounting

    def do_accounting(self, types: str, flags: str = "", table: str | None = None) -> bool:
        """Mark the transaction for accounting (proxyapp.acc.AccMark)."""
        mark = self.acc_mark
        if isinstance(mark, AccMark):
            mark.update(types, flags, table)
        else:
            # Parsed once per distinct argument triple; each transaction gets its own copy
            # because a mark is mutable (missed is cleared after the first missed call).
            key = (types, flags, table)
            tpl = _MARKS.get(key)
            if tpl is None:
                tpl = _MARKS[key] = AccMark.parse(types, flags, table)
            self.acc_mark = AccMark(set(tpl.types), tpl.cdr, tpl.missed, tpl.failed, tpl.table)
        if self.tctx is not None:
            self.tctx.acc_mark = self.acc_mark
        return True

    def drop_accounting(self, types: str | None = None, flags: str | None = None) -> bool:
        """Undo do_accounting: everything with no argument, else the given types and/or flags."""
        mark = self.acc_mark
        if isinstance(mark, AccMark):
            mark.drop(types, flags)
        return True

    def acc_log_request(self, comment: str) -> bool:
        acc = self.proxy.acc
        if acc is not None:
            acc.log_request(self.msg, comment, self.proxy.wallclock())
        return True

    def acc_db_request(self, comment: str, table: str) -> bool:
        acc = self.proxy.acc
        if acc is not None:
            acc.db_request(self.msg, comment, table, self.proxy.wallclock())
        return True

    # ---------------------------------------------------------- registrar and location

    def _location(self, table: str) -> Location:
        location = self._script.services.location
        if location is None:
            raise ScriptError(f"{table}: no location service (the proxy runs without [location])")
        return location

    def save(self, table: str = "location") -> bool:
        """OpenSIPS registrar save(): apply this REGISTER to the location (RFC 3261 §10.3) and
        reply to it statelessly (200 with every binding, or the error). True on 200."""
        msg = self.msg
        if msg.method != "REGISTER":
            raise ScriptError("save() on a request that is not a REGISTER")
        location = self._location(table)
        services = self._script.services
        now = self.proxy.wallclock()
        src = self.source
        aor = request_aor(msg)  # None when To is malformed: process_register answers 400
        current = location.get(aor, now) if aor else []
        outcome = process_register(
            msg, current, now=now, cfg=services.registrar, source=(src.transport, src.host, src.port),
            socket=str(src.local) if src.local is not None else "", node=services.node, conn=src.conn,
        )
        if outcome.bindings is not None and outcome.aor is not None:
            location.put(outcome.aor, outcome.bindings, now)
        self.proxy.sl_reply(msg, self.reply_dest, outcome.status, outcome.reason, headers=tuple(outcome.headers))
        self.replied = True
        return outcome.status == 200

    def _bindings(self, table: str, uri: str | URI | None) -> list[Binding]:
        target = self.msg.uri if uri is None else uri
        try:
            aor = aor_of(target)
        except (ValueError, fastsip.ParseError):
            return []
        return self._location(table).get(aor, self.proxy.wallclock())

    def registered(self, table: str = "location", uri: str | URI | None = None) -> bool:
        """OpenSIPS registered(): does the AOR (default the Request-URI) have a live binding?"""
        return bool(self._bindings(table, uri))

    def lookup(self, table: str = "location", uri: str | URI | None = None) -> int:
        """OpenSIPS lookup(): the AOR's bindings become the branch set t_relay forks to.

        Returns 1 (found), -1 (no binding: answer 404) or -2 (bindings, but none reachable:
        every one is an RFC 5626 flow whose connection is gone; answer 480). The Request-URI
        becomes the first contact ($ru), the rest ring in parallel, q groups in order."""
        bindings = self._bindings(table, uri)
        if not bindings:
            return -1
        node = self._script.services.node
        groups: list[list[Destination]] = []
        last_q: float | None = None
        for b in bindings:  # q descending, most recent first (the store's order)
            d = _destination(b, node)
            if d is None:
                continue
            if last_q is None or b.sort_q != last_q:
                groups.append([])
                last_q = b.sort_q
            groups[-1].append(d)
        if not groups:
            return -2
        self.msg.set_uri(groups[0][0].ruri)
        self.forks = groups
        return 1

    def log(self, text: str, level: str = "INFO") -> None:
        """xlog()."""
        logger.log(level.upper(), text)

    # ---------------------------------------------------------- digest authentication (auth, auth_db)

    auth_user: str | None = None  # the user www_/proxy_authorize authenticated ($au)
    _auth_result: AuthResult | None = None
    _auth_header = ""
    _auth_failed = False  # the last www_/proxy_authorize found no valid credentials

    def _auth(self) -> Auth:
        auth = self._script.services.auth
        if auth is None:
            raise ScriptError("authentication: no auth service (the proxy runs without [auth])")
        return auth

    def _realm(self, realm: str, www: bool) -> str:
        """The realm given, else [auth] realm, else the To host of a REGISTER (401) or the From
        host (OpenSIPS' rule for an empty realm)."""
        if realm:
            return realm
        configured = self._auth().cfg.realm
        if configured:
            return configured
        hdr = self.msg.to if www and self.msg.method == "REGISTER" else self.msg.from_
        host = getattr(hdr.uri, "host", None) if hdr is not None else None
        return str(host or "").strip("[]").lower()

    def _authorize(self, realm: str, header: str, www: bool) -> int:
        auth = self._auth()
        realm = self._realm(realm, www)
        values = self.msg.headers.getall(header)
        msg = self.msg
        via = msg.via[0] if msg.via else None
        key = (msg.call_id, str(msg.cseq), via.branch if via is not None else None)
        result = auth.authorize(values, realm, msg.method, self.source.host, key)
        self._auth_result = result
        self._auth_header = header
        self.auth_user = result.user
        self._auth_failed = result.code <= 0
        return result.code

    def www_authorize(self, realm: str = "") -> int:
        """Check the Authorization credentials (a registrar, 401). 1 = authorized, else one of
        proxyapp.auth's negative codes (NO_CREDENTIALS, INVALID_PASSWORD, STALE_NONCE, ...)."""
        return self._authorize(realm, "Authorization", True)

    def proxy_authorize(self, realm: str = "") -> int:
        """Check the Proxy-Authorization credentials (a proxy, 407); codes as www_authorize."""
        return self._authorize(realm, "Proxy-Authorization", False)

    def _challenge(self, realm: str, qop: str | None, algorithms: str | None, www: bool) -> bool:
        auth = self._auth()
        realm = self._realm(realm, www)
        last = self._auth_result
        stale = last is not None and last.stale and last.realm == realm
        try:
            values = auth.challenge(realm, qop, stale=stale, algorithms=algorithms)
        except ValueError as exc:
            raise ScriptError(str(exc)) from None
        name = "WWW-Authenticate" if www else "Proxy-Authenticate"
        code, reason = (401, "Unauthorized") if www else (407, "Proxy Authentication Required")
        self.proxy.sl_reply(self.msg, self.reply_dest, code, reason, headers=tuple((name, v) for v in values),
                            source=self.source, mark=self._reply_mark())
        self.replied = True
        return True

    def www_challenge(self, realm: str = "", qop: str | None = None, algorithms: str | None = None) -> bool:
        """Reply 401 with one WWW-Authenticate per [auth] algorithm (stale=true after a stale
        nonce or a replayed nonce count). qop: "auth" or "" (no qop, RFC 2069 clients); default
        [auth] qop. algorithms: e.g. "MD5" for a client that gives up on a challenge it does not
        understand instead of skipping it (baresip 1.0, SIPp 3.6); default [auth] algorithms."""
        return self._challenge(realm, qop, algorithms, True)

    def proxy_challenge(self, realm: str = "", qop: str | None = None, algorithms: str | None = None) -> bool:
        """Reply 407 with one Proxy-Authenticate per [auth] algorithm; as www_challenge."""
        return self._challenge(realm, qop, algorithms, False)

    def consume_credentials(self) -> bool:
        """Remove the credentials the last successful authorize used (not forwarded upstream)."""
        result = self._auth_result
        if result is None or result.index is None or result.code <= 0:
            return False
        msg = self.msg
        values = msg.headers.getall(self._auth_header)
        if result.index >= len(values):
            return False
        msg.remove_header(self._auth_header)
        for i, v in enumerate(values):
            if i != result.index:
                msg.append_header(self._auth_header, v)
        self._auth_result = dataclasses.replace(result, index=None)
        return True

    # ---------------------------------------------------------- identity (OpenSIPS uri: check_from, check_to)

    def _is_authenticated_as(self, hdr: object) -> bool:
        user = self.auth_user
        result = self._auth_result
        uri = getattr(hdr, "uri", None)
        if user is None or result is None or uri is None:
            return False
        if not same_user(getattr(uri, "user", None), user):
            return False
        host = getattr(uri, "host", None)
        return same_host(host, result.realm) or (host is not None and self.proxy.is_myself_uri(uri))

    def check_from(self) -> bool:
        """OpenSIPS check_from(): after a successful www_authorize or proxy_authorize, is the From URI the
        authenticated user's own? Its user part is ctx.auth_user (RFC 3261 §19.1.4: case-sensitive,
        %HH escapes decoded) and its host the realm authorized (case-insensitive) or one of ours.
        False without a successful authorization. OpenSIPS compares the user case-insensitively;
        this does not (the subscriber table's user names are case-sensitive here)."""
        return self._is_authenticated_as(self.msg.from_)

    def check_to(self) -> bool:
        """OpenSIPS check_to(): as check_from, for the To URI (a REGISTER's address of record)."""
        return self._is_authenticated_as(self.msg.to)

    # ---------------------------------------------------------- trusted sources (OpenSIPS permissions)

    def _group(self, group: str | int) -> Group:
        services = self._script.services
        table = self.proxy.cfg.permissions
        perms = services.permissions
        if perms is None or perms.source is not table:  # first use, or a new configuration
            perms = services.permissions = Permissions.from_dict(table)
        found = perms.group(group)
        if found is None:
            raise ScriptError(f"no address group {group!r} in [permissions] (groups: {', '.join(perms.groups)})")
        return found

    def allow_source_address(self, group: str | int = "trusted") -> bool:
        """OpenSIPS allow_source_address(group): does the request come from an address of the
        group (its source IP, port and transport against the entries' networks, ports and
        transports)? "trusted" (or 1) is [permissions] trusted, other names [permissions.groups].
        An unknown group raises ScriptError (a typo must not silently refuse or allow)."""
        src = self.source
        return self._group(group).match(src.host, src.port, src.transport)

    def check_address(self, group: str | int, ip: str, port: int | None = None, proto: str | None = None) -> bool:
        """OpenSIPS check_address(group, ip, port, proto): is ``ip`` (with ``port`` and
        ``proto``; None, 0 or "any": not compared) in the group? False for text that is not
        an IP address (a host name is never resolved)."""
        return self._group(group).match(str(ip), None if port is None else int(port), proto)


def _destination(b: Binding, node: str) -> Destination | None:
    """How a binding is reached (RFC 5626 §5.3, RFC 3327, RFC 3581), None when it cannot be.

    - Registered through another node sharing the store: via that node, our Route to it saying
      where the phone is (``received``), so its NAT binding or TCP flow is used there.
    - Over a connection of ours that is still open: back over that connection (the flow).
    - An outbound flow (instance + reg-id) whose connection is gone: not used (§5.3).
    - Otherwise its Path if it has one, else the address the REGISTER came from when that is
      not the Contact's own address (NAT), else the Contact itself.
    """
    src = f"{b.source_transport}:{b.source_host}:{b.source_port}" if b.source_host else None
    if b.node and node and b.node != node:
        hop = f"<{b.node};lr" + (f";received={src}" if src and not b.path else "") + ">"
        return Destination(b.contact, None, (hop, *b.path))
    conn = b.conn
    if b.source_transport != "udp":
        if conn is not None and not getattr(conn, "closed", True):
            return Destination(b.contact, None if b.path else src, b.path)
        if b.flow_key() is not None:
            return None
        return Destination(b.contact, None, b.path)
    if b.path:
        return Destination(b.contact, None, b.path)
    dst = None
    if src is not None:
        try:
            uri = fastsip.parse_uri(b.contact)
            if (uri.host or "").strip("[]").lower() != b.source_host.lower() or (uri.port or 5060) != b.source_port:
                dst = src
        except fastsip.ParseError:
            dst = src
    return Destination(b.contact, dst, ())
