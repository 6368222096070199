"""Test script: the default routing plus do_accounting on initial INVITEs (the seed's example)."""

from proxyapp import default_script


def route(msg, ctx):
    if not ctx.has_totag() and ctx.is_method("INVITE"):
        ctx.do_accounting("db", "failed")
    default_script.route(msg, ctx)


failure_route = default_script.failure_route
