"""Recording the calls a real function receives, without replacing it."""

from __future__ import annotations


def record_calls(monkeypatch, owner, name: str) -> list[tuple]:
    """Wrap ``owner.name`` (a module function) so that every call's positional arguments are
    appended to the returned list and the real function still runs (keyword arguments are
    passed on, not recorded)."""
    real = getattr(owner, name)
    calls: list[tuple] = []

    def recording(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, recording)
    return calls
