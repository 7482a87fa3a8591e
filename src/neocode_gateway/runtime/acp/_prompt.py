"""A run's input as ACP content blocks: text, and images read from data: URIs or files.

Pure functions but for the file read (replaceable in tests); no SDK import.
An image is read by the gateway (the agent may run elsewhere and ACP images
carry their bytes), at most :data:`MAX_IMAGE_BYTES`, and nothing is fetched
from the network.
"""

from __future__ import annotations

import base64
import binascii
import os
import urllib.parse
from typing import Any, Final

from neocode_gateway.runtime._port import RunInput

#: The largest image the gateway reads from a file or data: URI for a prompt.
MAX_IMAGE_BYTES: Final = 20 * 1024 * 1024


class InputError(ValueError):
    """A run's input cannot be turned into ACP content (the message says why)."""


def prompt_blocks(
    run: RunInput, workdir: str, *, images: bool = True, read: Any = None
) -> list[dict[str, Any]]:
    """A run's input -> ACP content blocks: its text, then its parts in order.

    An image part's ``media.uri`` is either a ``data:`` URI (base64 or
    percent-encoded) or a file: an absolute path, a ``file://`` URI, or a path
    relative to the session's workdir. The gateway reads the file (at most
    :data:`MAX_IMAGE_BYTES`) and sends its bytes (ACP images carry their data);
    other schemes (``http``...) cannot be fetched offline and are refused.
    ``images`` is the agent's ``promptCapabilities.image``. ``read`` replaces
    the file reader (tests). Raises :class:`InputError`.
    """
    blocks: list[dict[str, Any]] = []
    if run.text:
        blocks.append({"type": "text", "text": run.text})
    for index, part in enumerate(run.parts):
        if part.type == "text":
            blocks.append({"type": "text", "text": part.text or ""})
        elif part.type == "image":
            if not images:
                raise InputError("this agent does not accept images (promptCapabilities.image)")
            media = part.media
            if media is None or not media.uri or not media.mime_type:
                raise InputError(f"input_parts[{index}]: an image needs media.uri and mime_type")
            data = image_data(media.uri, workdir, read=read)
            block: dict[str, Any] = {"type": "image", "mimeType": media.mime_type, "data": data}
            if not media.uri.startswith("data:"):
                block["uri"] = media.uri
            blocks.append(block)
        else:
            raise InputError(f"input_parts[{index}]: unsupported part type {part.type!r}")
    if not blocks:
        raise InputError("the run has no input")
    return blocks


def image_data(uri: str, workdir: str, *, read: Any = None) -> str:
    """The base64 data of the image at ``uri`` (see :func:`prompt_blocks`)."""
    if uri.startswith("data:"):
        header, comma, payload = uri[5:].partition(",")
        if not comma:
            raise InputError("image media.uri: a data: URI needs a comma before its data")
        if header.endswith(";base64"):
            try:
                raw = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise InputError("image media.uri: the data: URI is not valid base64") from None
        else:
            raw = urllib.parse.unquote_to_bytes(payload)
        if len(raw) > MAX_IMAGE_BYTES:
            raise InputError(f"image larger than {MAX_IMAGE_BYTES} bytes")
        return base64.b64encode(raw).decode("ascii")
    if uri.startswith("file://"):
        parsed = urllib.parse.urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise InputError(f"image media.uri: a file:// URI of another host: {uri!r}")
        path = urllib.parse.unquote(parsed.path)
    elif "://" in uri:
        raise InputError(
            "image media.uri must be a data: URI or a file path (the gateway fetches nothing)"
        )
    else:
        path = uri
    path = os.path.join(workdir, os.path.expanduser(path))
    reader = read or _read_file
    try:
        raw = reader(path)
    except OSError as exc:
        raise InputError(f"image {path}: cannot be read ({exc.strerror or exc})") from None
    return base64.b64encode(raw).decode("ascii")


def _read_file(path: str) -> bytes:
    with open(path, "rb") as handle:
        raw = handle.read(MAX_IMAGE_BYTES + 1)
    if len(raw) > MAX_IMAGE_BYTES:
        raise InputError(f"image {path}: larger than {MAX_IMAGE_BYTES} bytes")
    return raw
