"""Routing script of the accounting end-to-end tests: the seed's OpenSIPS example, in Python.

INVITE: do_accounting("db|log|evi", "cdr|missed", "my_acc")  (the seed has "db|log"; evi is
added so the same calls also feed the event datagrams);  BYE: do_accounting("aaa").
"""


def route(msg, ctx):
    if not ctx.mf_process_maxfwd_header(70):
        ctx.sl_send_reply(483, "Too Many Hops")
        return
    if ctx.has_totag():
        if ctx.is_method("BYE"):
            ctx.do_accounting("aaa")
        if ctx.loose_route():
            if ctx.is_method("INVITE"):
                ctx.record_route()
            ctx.t_relay()
            return
        if ctx.is_method("ACK"):
            if ctx.t_check_trans():
                ctx.t_relay()
            return
        ctx.sl_send_reply(404, "Not here")
        return
    if ctx.is_method("CANCEL"):
        if ctx.t_check_trans():
            ctx.t_relay()
        return
    if ctx.is_method("INVITE"):
        ctx.do_accounting("db|log|evi", "cdr|missed", "my_acc")
    ctx.record_route()
    if not ctx.t_relay():
        ctx.sl_reply_error()
