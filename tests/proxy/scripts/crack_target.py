"""A registrar behind digest authentication (MD5 only: what sipvicious svcrack answers), the
built-in routing for everything else: the target of the password-guessing test in test_floods."""

from proxyapp import default_script
from proxyapp.auth import AUTHORIZED


def route(msg, ctx):
    if ctx.is_method("REGISTER") and ctx.is_myself(msg.uri):
        if ctx.www_authorize() != AUTHORIZED:
            ctx.www_challenge(algorithms="MD5")
            return
        ctx.consume_credentials()
    default_script.route(msg, ctx)


failure_route = default_script.failure_route
