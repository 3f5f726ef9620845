"""An ACP prompt (content blocks) as the text and images of one mcode user message.

    text                      as it is
    resource_link             " @path " (workspace-relative where it can be), as a user types it
    resource (embedded text)  the text, fenced in a <context> element naming its uri
    resource (embedded blob)  an image, if the model takes images; otherwise refused
    image                     an image part, if the model takes images; otherwise refused
    audio                     refused (no mcode model hears)

A refusal is a JSON-RPC invalid-params error whose message says what to do; nothing is sent.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from acp import RequestError
from acp import schema as s

from mcode.messages import ImagePart

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def _refuse(message: str, hint: str) -> RequestError:
    return RequestError.invalid_params({"message": message, "hint": hint})


def path_of(uri: str, workspace: Path) -> str:
    """A ``file://`` uri as a path the model can pass to its tools (relative inside the
    workspace); any other uri as it is."""
    parts = urlsplit(uri)
    if parts.scheme != "file":
        return uri
    path = Path(unquote(parts.path))
    try:
        return str(path.relative_to(workspace))
    except ValueError:
        return str(path)


def _image(
    mime_type: str | None, data: str, what: str, model: str, takes_images: bool
) -> ImagePart:
    if not takes_images:
        raise _refuse(
            f"the model {model} does not take images ({what})",
            "remove the image, or start mcode acp with a model that takes images",
        )
    if mime_type not in IMAGE_TYPES:
        raise _refuse(
            f"{what} is {mime_type or 'of no stated type'}", f"send one of {', '.join(IMAGE_TYPES)}"
        )
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _refuse(
            f"{what} is not valid base64", "send the image's bytes base64-encoded"
        ) from None
    return ImagePart(mime_type, data, source=what)


def user_content(
    blocks: list[Any], workspace: Path, *, model: str, takes_images: bool
) -> tuple[str, tuple[ImagePart, ...]]:
    """The text and images of ``blocks`` (see the module docstring)."""
    texts: list[str] = []
    images: list[ImagePart] = []
    for n, block in enumerate(blocks, 1):
        if isinstance(block, s.TextContentBlock):
            texts.append(block.text)
        elif isinstance(block, s.ResourceContentBlock):
            texts.append(f" @{path_of(block.uri, workspace)} ")
        elif isinstance(block, s.EmbeddedResourceContentBlock):
            resource = block.resource
            name = path_of(resource.uri, workspace)
            if isinstance(resource, s.TextResourceContents):
                texts.append(f'\n<context uri="{name}">\n{resource.text}\n</context>\n')
            else:
                images.append(_image(resource.mime_type, resource.blob, name, model, takes_images))
        elif isinstance(block, s.ImageContentBlock):
            what = block.uri or f"image {n}"
            images.append(_image(block.mime_type, block.data, what, model, takes_images))
        else:
            raise _refuse(
                f"prompt block {n} is {getattr(block, 'type', type(block).__name__)}, which mcode "
                "does not take",
                "send text, images and resources",
            )
    text = "".join(texts).strip()
    if not text.strip() and not images:
        raise _refuse("the prompt is empty", "type what mcode should do")
    return text, tuple(images)
