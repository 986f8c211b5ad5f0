"""The read-only web view of a store (extra ``[web]``): ``qmcp-agents serve`` or
:func:`create_app` in your own ASGI server.

    from qmcp_agents.adapters.web import create_app
    app = create_app(url="postgresql://localhost/agents", token="s3cret")
"""

from .app import create_app

__all__ = ["create_app"]
