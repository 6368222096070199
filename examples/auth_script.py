"""Digest authentication in front of the default routing (OpenSIPS' auth_db recipe, in Python).

Who may do what, in the order route() asks (the Kamailio default configuration's rules):

- A trusted source (``[permissions] trusted``: a trunk, a server of ours) is routed without a
  challenge, to any destination (allow_source_address).
- A REGISTER for our domain must carry valid Authorization credentials (401 challenge
  otherwise), and the authenticated user may register only its own address (check_to).
- A call or message from one of our users (From in our domain) must carry valid
  Proxy-Authorization credentials (407 otherwise), for the From user itself (check_from).
- Anyone else (a foreign From, not authenticated) may only reach our own domain: a request for
  another domain gets ``403 Relaying Forbidden``, so the proxy is no open relay (toll fraud).

The credentials used are removed before the request goes on (consume_credentials), then the
built-in default script routes it (registrar, location, accounting). ACK and CANCEL are never
challenged (RFC 3261 §22.1: they cannot be resubmitted); one that matches no transaction of ours
is relayed only to our domain. In-dialog requests are not challenged (the dialog was
authenticated when it was set up). Use it with examples/auth.toml; add users with
``proxyapp user --config examples/auth.toml add alice@DOMAIN PASSWORD``.
"""

from proxyapp import default_script
from proxyapp.auth import AUTHORIZED, CODES

CHALLENGED = "INVITE|MESSAGE|SUBSCRIBE|OPTIONS|REFER|PUBLISH|NOTIFY|INFO"


def algorithms(msg, ctx):
    """None (every [auth] algorithm, SHA-256 first) or "MD5" for the User-Agents listed in
    [script_params] md5_only: clients that give up on the first challenge they cannot answer
    instead of skipping it (baresip 1.0: "Function not implemented"; SIPp 3.6)."""
    agent = msg.header("User-Agent") or ""
    if any(agent.startswith(prefix) for prefix in ctx.params.get("md5_only", ())):
        return "MD5"
    return None


def route(msg, ctx):
    if ctx.has_totag() or ctx.allow_source_address("trusted"):
        default_script.route(msg, ctx)  # in-dialog (Route set), or a trusted source: no challenge
        return
    if ctx.is_method("ACK|CANCEL") and ctx.t_check_trans():
        default_script.route(msg, ctx)  # belongs to a transaction already let through
        return
    authenticated = False
    if ctx.is_method("REGISTER") and ctx.is_myself(msg.uri):
        code = ctx.www_authorize()  # realm: [auth] realm, else the To domain
        if code != AUTHORIZED:
            ctx.log(f"REGISTER from {ctx.source_ip}: {CODES.get(code, code)}, challenged", "DEBUG")
            ctx.www_challenge(algorithms=algorithms(msg, ctx))  # 401, one WWW-Authenticate per algorithm
            return
        if not ctx.check_to():
            ctx.sl_send_reply(403, "Forbidden auth ID")  # registering someone else's address
            return
        ctx.consume_credentials()
        authenticated = True
    elif ctx.is_method(CHALLENGED) and msg.from_ is not None and ctx.is_myself(msg.from_.uri):
        code = ctx.proxy_authorize()  # realm: [auth] realm, else the From domain
        if code != AUTHORIZED:
            ctx.log(f"{msg.method} from {ctx.source_ip}: {CODES.get(code, code)}, challenged", "DEBUG")
            ctx.proxy_challenge(algorithms=algorithms(msg, ctx))  # 407, one Proxy-Authenticate per algorithm
            return
        if not ctx.check_from():
            ctx.sl_send_reply(403, "Forbidden auth ID")  # calling as someone else
            return
        ctx.consume_credentials()
        authenticated = True
    if not authenticated and not ctx.is_myself(msg.uri):
        # Neither trusted nor one of our users: our domain only, never relayed elsewhere.
        ctx.log(f"{msg.method} from {ctx.source_ip} to {msg.raw_uri}: relaying forbidden", "DEBUG")
        if not ctx.is_method("ACK"):
            ctx.sl_send_reply(403, "Relaying Forbidden")
        return
    default_script.route(msg, ctx)


failure_route = default_script.failure_route
