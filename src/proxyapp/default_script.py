"""The built-in routing script: the OpenSIPS 2.2 configuration of the seed, in Python.

Copy it (examples/default_script.py is the same file) and point ``script =`` in the TOML file at
your copy to change the routing. ``route(msg, ctx)`` runs for every request that is not a
retransmission; ``msg`` is the fastsip Request, ``ctx`` carries the OpenSIPS-like verbs.
"""


def route(msg, ctx):
    # Max-Forwards check (OpenSIPS maxfwd): 0 -> 483, otherwise decremented (70 when absent).
    if not ctx.mf_process_maxfwd_header(70):
        ctx.sl_send_reply(483, "Too Many Hops")
        return

    if ctx.has_totag():
        # Sequential request within a dialog: follow the Route set we Record-Routed.
        if ctx.loose_route():
            if ctx.is_method("INVITE"):
                ctx.record_route()  # re-INVITE: keep us in the route set
            ctx.t_relay()
            return
        if ctx.is_method("ACK"):
            # An ACK without Route: relay it only if it belongs to a transaction of ours
            # (the ACK of a non-2xx is already absorbed by its transaction).
            if ctx.t_check_trans():
                ctx.t_relay()
            return
        ctx.sl_send_reply(404, "Not here")
        return

    if ctx.is_method("CANCEL"):
        if ctx.t_check_trans():
            ctx.t_relay()  # 200 hop by hop, then CANCEL the branches that rang
        else:
            ctx.forward()  # RFC 3261 §16.10: no transaction -> stateless
        return

    local = ctx.is_myself(msg.uri)
    if local:
        # Our own domain (our addresses and aliases): the registrar and the location service.
        if ctx.is_method("REGISTER"):
            ctx.save("location")  # replies itself: 200 with the bindings, or the error
            return
        if msg.uri.user is None:
            # Addressed to the proxy itself: answer keep-alive OPTIONS, nothing else lives here.
            if ctx.is_method("OPTIONS"):
                ctx.sl_send_reply(200, "OK")
            else:
                ctx.sl_send_reply(404, "Not Found")
            return
        found = ctx.lookup("location")  # every binding rings at once (q groups in order)
        if found == -1:
            ctx.sl_send_reply(404, "Not Found")  # nobody registered under this name
            return
        if found < 0:
            ctx.sl_send_reply(480, "Temporarily Unavailable")  # registered, but unreachable
            return

    # Initial request: stay in the path of the dialog.
    if not ctx.is_method("REGISTER"):
        ctx.record_route()

    if ctx.is_method("INVITE") and ctx.acc_mark is None:
        # Calls are accounted (the seed's acc use case): a CDR when the BYE is answered, a
        # missed-call record when nobody answers, failed attempts too. With the embedded
        # defaults they go to the log and to SQLite (./proxyapp-acc.db); without an [acc]
        # table the mark records nothing. A script that calls this route after marking the
        # request itself keeps its own choice.
        ctx.do_accounting("log|db", "cdr|missed|failed")

    if not local:
        # "Request URI is different, possibly outbound, append header" (the seed's log line).
        ctx.append_hf("P-hint: outbound\r\n")

    ctx.t_on_failure(failure_route)
    if not ctx.t_relay():
        ctx.sl_reply_error()


def failure_route(msg, ctx):
    """Serial forking: when the first destination failed, try the configured fallback once."""
    if ctx.t_was_cancelled():
        return
    fallback = ctx.params.get("failover_destination")
    codes = ctx.params.get("failover_codes", [408, 500, 503])
    if fallback and ctx.t_reply_code in codes:
        ctx.t_relay(fallback)
