"""web_fetch and web_search, the web plugin's tools.

``web_fetch`` gets a URL with httpx (http and https only, redirects followed up to
:data:`MAX_REDIRECTS` and reported, the body read up to :data:`MAX_BYTES`), and answers with
HTML turned into Markdown, text and JSON as they are, and for anything else (images, PDFs,
archives) a line saying what it is instead of bytes. ``web_search`` asks a configured backend
(a SearXNG instance's JSON API: ``[plugins.web] search_url``) and answers with the results'
titles, URLs and snippets; with no backend configured it says so, and that is all it does.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlparse

from mcode.plugins.web.html_markdown import html_to_markdown

from mcode.errors import ToolError
from mcode.tools.base import Tool, ToolContext, ToolResult

MAX_BYTES = 2_000_000  # read at most this much of a body
MAX_CHARS = 40_000  # of Markdown given to the model
MAX_REDIRECTS = 5
TIMEOUT = 30.0
USER_AGENT = "mcode-web/0.1 (+https://github.com/mcode)"


def make_tools(settings: dict[str, Any]) -> list[Tool]:
    """The plugin's tools; ``settings`` is ``[plugins.web]`` (``search_url``, ``max_chars``)."""
    url = settings.get("search_url")
    return [
        WebFetchTool(max_chars=int(settings.get("max_chars", MAX_CHARS))),
        WebSearchTool(url if isinstance(url, str) and url else None),
    ]


class WebFetchTool(Tool):
    name = "web_fetch"
    description = (
        "Fetch a web page (http or https) and read it as Markdown; text and JSON come as they "
        "are, other content types are described, not shown. Long pages are cut."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"url": {"type": "string", "description": "http:// or https:// URL"}},
        "required": ["url"],
        "additionalProperties": False,
    }
    permission = "execute"  # it reaches the network: asked for in ask mode

    def __init__(self, max_chars: int = MAX_CHARS) -> None:
        self.max_chars = max_chars

    def subject(self, args: dict[str, Any]) -> str:
        return str(args.get("url", ""))

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        import httpx

        url = str(args["url"]).strip()
        if urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc:
            raise ToolError(f"{url!r} is not an http or https URL")
        try:
            async with (
                httpx.AsyncClient(
                    follow_redirects=True,
                    max_redirects=MAX_REDIRECTS,
                    timeout=TIMEOUT,
                    headers={"User-Agent": USER_AGENT},
                ) as client,
                client.stream("GET", url) as response,
            ):
                body = bytearray()
                truncated = False
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        truncated = True
                        del body[MAX_BYTES:]
                        break
                hops = [str(r.url) for r in response.history]
                final = str(response.url)
                status = response.status_code
                kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                charset = response.charset_encoding or "utf-8"
        except httpx.TooManyRedirects:
            raise ToolError(f"{url} redirected more than {MAX_REDIRECTS} times") from None
        except httpx.HTTPError as e:
            raise ToolError(f"could not fetch {url}: {type(e).__name__}: {e}") from None
        notes = []
        if hops:
            notes.append(f"redirected from {url} to {final}")
        if truncated:
            notes.append(f"the body was cut at {MAX_BYTES:,} bytes")
        if status >= 400:
            raise ToolError(
                f"{final} answered HTTP {status}" + (f" ({'; '.join(notes)})" if notes else "")
            )
        text = bytes(body).decode(charset, errors="replace")
        if kind in ("text/html", "application/xhtml+xml") or (
            not kind and "<html" in text[:500].lower()
        ):
            title, markdown = html_to_markdown(text, final)
            content = (f"# {title}\n\n" if title else "") + markdown
        elif (
            kind.startswith("text/")
            or kind in ("application/json", "application/xml")
            or kind.endswith("+json")
        ):
            content = text
        else:
            size = f"{len(body):,} bytes" + (" or more" if truncated else "")
            content = f"(not shown: {final} is {kind or 'of an unknown type'}, {size})"
        if len(content) > self.max_chars:
            content = content[: self.max_chars]
            notes.append(f"cut at {self.max_chars:,} characters")
        head = f"URL: {final}\nContent-Type: {kind or 'unknown'}" + (
            f"\nNote: {'; '.join(notes)}" if notes else ""
        )
        return ToolResult(f"{head}\n\n{content}", f"{status} {final}")


class WebSearchTool(Tool):
    name = "web_search"
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "limit": {"type": "integer", "description": "at most this many results (10)"},
        },
        "required": ["query"],
        "additionalProperties": False,
    }
    permission = "execute"

    def __init__(self, search_url: str | None) -> None:
        self.search_url = search_url
        self.description = (  # type: ignore[misc]
            "Search the web; answers with titles, URLs and snippets (read a page with web_fetch)."
            if search_url
            else "Search the web. UNAVAILABLE: no search backend is configured, so every call "
            "fails; do not use it."
        )

    def subject(self, args: dict[str, Any]) -> str:
        return str(args.get("query", ""))

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        import httpx

        if not self.search_url:
            raise ToolError(
                "web_search is unavailable: no search backend is configured",
                hint='the user can set [plugins.web] search_url = "https://searx.example" '
                "(a SearXNG instance) in the mcode config",
            )
        query = str(args["query"]).strip()
        if not query:
            raise ToolError("web_search needs a non-empty query")
        limit = max(1, min(int(args.get("limit") or 10), 50))
        endpoint = self.search_url.rstrip("/") + "/search"
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=True) as client:
                response = await client.get(endpoint, params={"q": query, "format": "json"})
                response.raise_for_status()
                data = response.json()
        except (httpx.HTTPError, ValueError) as e:
            raise ToolError(
                f"the search backend {endpoint} failed: {type(e).__name__}: {e}"
            ) from None
        results = data.get("results", []) if isinstance(data, dict) else []
        lines = []
        for i, r in enumerate(results[:limit], 1):
            if not isinstance(r, dict):
                continue
            snippet = " ".join(str(r.get("content") or "").split())[:300]
            lines.append(f"{i}. {r.get('title') or '(no title)'}\n   {r.get('url')}\n   {snippet}")
        content = "\n".join(lines) or f"no results for {query!r}"
        return ToolResult(content, f"{len(lines)} results for {query!r}")
