"""A routing script for a proxy on the public internet (examples/production.toml; issue 17).

The access rules, in the order route() applies them (the Kamailio default configuration's, with
OpenSIPS verb names):

1. Max-Forwards (483 at 0), then in-dialog requests follow their Route set: the dialog was
   checked when it was set up (default_script).
2. Trusted sources, ``[permissions] trusted`` (the carriers' trunks, your media or voicemail
   servers): routed to any destination without a challenge (allow_source_address). Inbound calls
   from a carrier reach our users; calls a carrier hands back go where they ask.
3. A REGISTER for our domain: digest authentication (401), and only for the user's own address
   (check_to, else 403). A REGISTER for another domain is not relayed (rule 5).
4. A request from one of our users (From in our domain): digest authentication (407), and only
   as that user (check_from, else 403). Then it may go anywhere (the default script routes it:
   our users by the location service, other domains by DNS).
5. Anyone else, unauthenticated: our own domain only (our users' inbound calls), any other
   destination gets ``403 Relaying Forbidden``. That is what stops toll fraud through the proxy.

ACK and CANCEL cannot be challenged (RFC 3261 §22.1): one that belongs to a transaction of ours
follows it, any other is subject to rule 5. Scanners, floods and password guessers are stopped
before the script by [limits]; the credentials used are removed before relaying
(consume_credentials). Everything else (registrar, location, accounting) is the default script.
"""

from proxyapp import default_script
from proxyapp.auth import AUTHORIZED, CODES

# Methods our users must authenticate (the others are in-dialog, or cannot be challenged).
CHALLENGED = "INVITE|MESSAGE|SUBSCRIBE|OPTIONS|REFER|PUBLISH|NOTIFY|INFO"


def _algorithms(msg, ctx):
    """MD5 only for the User-Agent prefixes in [script_params] md5_only (clients that stop at a
    SHA-256 challenge instead of answering the MD5 one after it); else every [auth] algorithm."""
    agent = msg.header("User-Agent") or ""
    if any(agent.startswith(prefix) for prefix in ctx.params.get("md5_only", ())):
        return "MD5"
    return None


def _authenticated(msg, ctx):
    """Rules 3 and 4: True when the request is from one of our users, authenticated as itself;
    False when it is not ours to authenticate; None when it was answered (401/407/403)."""
    if ctx.is_method("REGISTER"):
        if not ctx.is_myself(msg.uri):
            return False
        code = ctx.www_authorize()  # realm: [auth] realm
        if code != AUTHORIZED:
            ctx.log(f"REGISTER from {ctx.source_ip}: {CODES.get(code, code)}, challenged", "DEBUG")
            ctx.www_challenge(algorithms=_algorithms(msg, ctx))
            return None
        if not ctx.check_to():
            ctx.sl_send_reply(403, "Forbidden auth ID")
            return None
    elif ctx.is_method(CHALLENGED) and msg.from_ is not None and ctx.is_myself(msg.from_.uri):
        code = ctx.proxy_authorize()
        if code != AUTHORIZED:
            ctx.log(f"{msg.method} from {ctx.source_ip}: {CODES.get(code, code)}, challenged", "DEBUG")
            ctx.proxy_challenge(algorithms=_algorithms(msg, ctx))
            return None
        if not ctx.check_from():
            ctx.sl_send_reply(403, "Forbidden auth ID")
            return None
    else:
        return False
    ctx.consume_credentials()  # our credentials are not for the next hop
    return True


def route(msg, ctx):
    if not ctx.mf_process_maxfwd_header(70):
        ctx.sl_send_reply(483, "Too Many Hops")
        return
    if ctx.has_totag() or ctx.allow_source_address("trusted"):
        default_script.route(msg, ctx)  # rules 1 and 2
        return
    if ctx.is_method("ACK|CANCEL") and ctx.t_check_trans():
        default_script.route(msg, ctx)
        return
    ours = _authenticated(msg, ctx)
    if ours is None:
        return  # answered
    if not ours and not ctx.is_myself(msg.uri):
        # Rule 5. DEBUG, not INFO: scanners send thousands of these, the log must not amplify them.
        ctx.log(f"{msg.method} from {ctx.source_ip} to {msg.raw_uri}: relaying forbidden", "DEBUG")
        if not ctx.is_method("ACK"):
            ctx.sl_send_reply(403, "Relaying Forbidden")
        return
    default_script.route(msg, ctx)


failure_route = default_script.failure_route
