"""A routing script for a small SIP trunk: ACL, number normalisation, prefix routing, failover, accounting.

Used with examples/trunk.toml. Parameters come from the TOML file's [script_params] table:

    trusted   = ["127.0.0.1", "10.0.0.0/8"]         # who may place calls through us
    gateways  = { "1" = "udp:10.0.0.10:5060", "44" = "udp:10.0.0.20:5060" }   # prefix -> gateway
    default_gateway = "udp:10.0.0.30:5060"
    backup_gateway  = "udp:10.0.0.31:5060"          # serial forking on 408/5xx
"""

import ipaddress


def _trusted(ctx):
    ip = ipaddress.ip_address(ctx.source_ip)
    return any(ip in ipaddress.ip_network(net, strict=False) for net in ctx.params.get("trusted", []))


def _gateway_for(user, params):
    best = ""
    for prefix in params.get("gateways", {}):
        if user.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return params["gateways"][best] if best else params.get("default_gateway")


def route(msg, ctx):
    if not ctx.mf_process_maxfwd_header(70):
        ctx.sl_send_reply(483, "Too Many Hops")
        return

    # Keep-alive pings addressed to the proxy itself.
    if ctx.is_method("OPTIONS") and ctx.is_myself(msg.uri) and msg.uri.user is None:
        ctx.sl_send_reply(200, "OK")
        return

    if ctx.has_totag():
        if ctx.loose_route():
            if ctx.is_method("BYE"):
                ctx.do_accounting("log")  # the BYE closes the CDR opened by the INVITE
            ctx.t_relay()
        elif ctx.is_method("ACK"):
            if ctx.t_check_trans():
                ctx.t_relay()
        else:
            ctx.sl_send_reply(404, "Not here")
        return

    if ctx.is_method("CANCEL"):
        if ctx.t_check_trans():
            ctx.t_relay()
        return

    if not ctx.is_method("INVITE|MESSAGE|OPTIONS"):
        ctx.sl_send_reply(405, "Method Not Allowed")
        return

    if not _trusted(ctx):
        ctx.log(f"rejecting {msg.method} from untrusted {ctx.source_ip}", "WARNING")
        ctx.sl_send_reply(403, "Forbidden")
        return

    # Normalise the dialled number: +E.164 and 00-prefixed international become digits only.
    user = msg.uri.user or ""
    digits = user[1:] if user.startswith("+") else user[2:] if user.startswith("00") else user
    if digits != user:
        ctx.ruri = ctx.ruri.replace(f"sip:{user}@", f"sip:{digits}@", 1)

    gateway = _gateway_for(digits, ctx.params)
    if gateway is None:
        ctx.sl_send_reply(404, "No Route")
        return

    if ctx.is_method("INVITE"):
        ctx.do_accounting("log", "cdr|missed|failed")
        ctx.record_route()
        ctx.t_on_failure("trunk_failover")
        ctx.t_on_reply("trunk_reply")
    ctx.append_hf("P-hint: outbound\r\n")
    if not ctx.t_relay(gateway):
        ctx.sl_reply_error()


def trunk_reply(msg, ctx):
    if msg.status in (180, 183):
        ctx.log(f"call {msg.call_id} is ringing ({msg.status})", "DEBUG")


def trunk_failover(msg, ctx):
    if ctx.t_was_cancelled():
        return
    backup = ctx.params.get("backup_gateway")
    if backup and (ctx.t_reply_code == 408 or ctx.t_reply_code >= 500):
        ctx.do_accounting("log", "missed")  # re-arm: account each destination that did not answer
        ctx.t_on_failure("trunk_failover_last")
        ctx.t_relay(backup)


def trunk_failover_last(msg, ctx):
    """The backup failed too: the best response goes upstream as it is."""
