"""ScriptContext.__init__ sets RequestState's slots itself instead of calling RequestState.__init__
(proxyapp.script: a Python frame less per request). Pin that it sets every one of them, to the
values RequestState starts with, so a slot added to RequestState cannot be left unset."""

from __future__ import annotations

import fastsip

from proxyapp.core import RequestState
from proxyapp.proxy import Target
from proxyapp.script import ScriptContext

from .callflow import CALLER, invite, new_proxy


def test_script_context_sets_every_request_state_slot() -> None:
    proxy = new_proxy()
    msg = fastsip.parse(invite(1))
    assert isinstance(msg, fastsip.Request)
    src = Target("udp", CALLER[0], CALLER[1], None, proxy.cfg.listen[0])
    dest = Target("udp", CALLER[0], CALLER[1] + 1, None, proxy.cfg.listen[0])
    key = ("z9hG4bK-1", "127.0.0.1:45080", "INVITE")
    ctx = ScriptContext(proxy, msg, src, dest, key)
    ref = RequestState(msg, src, dest, key)
    for name in RequestState.__slots__:
        assert getattr(ctx, name) == getattr(ref, name), name
    assert (ctx.msg, ctx.source, ctx.reply_dest, ctx.key) == (msg, src, dest, key)
