"""proxyapp routing script for the accounting variants of bench/proxy/run.py.

The built-in default script's routing, with accounting marked as bench/proxy/kamailio.cfg does it:
initial INVITEs with CDRs (dialog-level) and failed transactions, in-dialog BYEs as transactions.
[script_params] acc_types picks the backend ("log" or "db").
"""

from proxyapp import default_script

failure_route = default_script.failure_route


def route(msg, ctx):
    types = ctx.params.get("acc_types", "log")
    if ctx.is_method("INVITE") and not ctx.has_totag():
        ctx.do_accounting(types, "cdr|failed")
    elif ctx.is_method("BYE"):
        ctx.do_accounting(types, "failed")
    default_script.route(msg, ctx)
