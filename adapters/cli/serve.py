"""``qmcp-agents serve``: the read-only web view of a store (extra ``[web]``)."""

from __future__ import annotations

from typing import Annotated

import typer

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TOKEN_VARIABLE = "QMCP_WEB_TOKEN"


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        store: Annotated[
            str | None,
            typer.Option("--store", help="Store URL (default: the global --store / QMCP_STORE_URL)."),
        ] = None,
        host: Annotated[
            str, typer.Option(help="Address to listen on; other than loopback needs --token.")
        ] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
        token: Annotated[
            str | None,
            typer.Option(
                envvar=TOKEN_VARIABLE, help=f"Token every request must carry (or ${TOKEN_VARIABLE})."
            ),
        ] = None,
    ) -> None:
        """Serve a read-only web view of the store's executions, topologies and agent types."""
        from .app import fail, settings

        url = store or settings.store_url
        if url.startswith("memory:"):
            fail("serve needs a persistent store (sqlite://, postgresql://, mongodb://); memory:// is empty")
        if host not in LOOPBACK and not token:
            fail(f"serving on {host} (not loopback) needs a token: --token or ${TOKEN_VARIABLE}")
        try:
            import uvicorn

            from qmcp_agents.adapters.web import create_app
        except ImportError as error:
            fail(f"serve needs the web extra: pip install 'qmcp-agents[web]' ({error.name} is missing)")
        where = f"http://{host}:{port}/"
        typer.echo(f"serving {url} at {where}" + (" (token required)" if token else ""), err=True)
        uvicorn.run(create_app(url=url, token=token), host=host, port=port, log_level="warning")


__all__ = ["LOOPBACK", "TOKEN_VARIABLE", "register"]
