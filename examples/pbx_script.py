"""A routing script for an office: phones register with proxyapp, call each other by name, and
reach the outside world through one SIP trunk; calls from the trunk ring the phones.

Used with examples/pbx.toml. Parameters come from the TOML file's [script_params] table:

    domain       = "pbx.example.com"           # the phones' domain (an alias of the proxy)
    trunk        = "udp:192.0.2.10:5060"      # the carrier's SIP trunk (outbound calls)
    trunk_hosts  = ["192.0.2.10"]             # where the carrier's calls come from
    did          = { "15551230001" = "alice", "15551230002" = "bob" }   # DID -> local user
    operator     = "alice"                     # who gets calls to unknown DIDs
"""


def route(msg, ctx):
    if not ctx.mf_process_maxfwd_header(70):
        ctx.sl_send_reply(483, "Too Many Hops")
        return

    if ctx.has_totag():
        # In-dialog: follow the Record-Route set (the core already removed our own Route).
        if ctx.loose_route():
            if ctx.is_method("BYE"):
                ctx.do_accounting("db")
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

    from_trunk = ctx.source_ip in ctx.params.get("trunk_hosts", [])

    if ctx.is_method("REGISTER"):
        if from_trunk or not ctx.is_myself(msg.uri):
            ctx.sl_send_reply(403, "Forbidden")
        else:
            ctx.save("location")
        return

    if ctx.is_method("OPTIONS") and ctx.is_myself(msg.uri) and msg.uri.user is None:
        ctx.sl_send_reply(200, "OK")
        return

    if ctx.is_method("INVITE"):
        ctx.do_accounting("db", "cdr|missed|failed")
    ctx.record_route()

    user = msg.uri.user or ""
    if from_trunk:
        # A call from the carrier: its Request-URI names the dialled number (DID).
        local = ctx.params.get("did", {}).get(user.lstrip("+")) or ctx.params.get("operator")
        if local is None:
            ctx.sl_send_reply(404, "Not Found")
            return
        _call_phone(ctx, f"sip:{local}@{ctx.params.get('domain', msg.uri.host)}")
        return

    if ctx.is_myself(msg.uri) and not user.lstrip("+").isdigit():
        # A phone calls another phone by name.
        _call_phone(ctx, None)
        return

    # A number (or another domain): out through the trunk, only for our own phones.
    if not ctx.registered("location", msg.from_.uri):
        ctx.sl_send_reply(403, "Forbidden")
        return
    ctx.t_on_failure("trunk_failed")
    if not ctx.t_relay(ctx.params["trunk"]):
        ctx.sl_reply_error()


def _call_phone(ctx, aor):
    found = ctx.lookup("location", aor)
    if found == -1:
        ctx.sl_send_reply(404, "Not Found")
    elif found < 0:
        ctx.sl_send_reply(480, "Temporarily Unavailable")
    elif not ctx.t_relay():
        ctx.sl_reply_error()


def trunk_failed(msg, ctx):
    """The carrier said no: log it; the best response goes back to the phone."""
    ctx.log(f"trunk answered {ctx.t_reply_code} for {msg.raw_uri}", "INFO")
