"""The v1 frame contract, pure: frame types, validation, error codes, NDJSON framing.

Nothing in this package does I/O; the server and the client feed it bytes.
"""

from neocode_gateway.errors import FrameError
from neocode_gateway.protocol import _codes as codes
from neocode_gateway.protocol._codes import (
    ERROR_CODES,
    INTERNAL_ERROR,
    INVALID_ACTION,
    INVALID_FRAME,
    INVALID_MULTIMODAL_PAYLOAD,
    MISSING_REQUIRED_FIELD,
    UNSUPPORTED_ACTION,
)
from neocode_gateway.protocol._frames import (
    ACTION_SET,
    ACTIONS,
    FRAME_TYPES,
    PERMISSION_DECISIONS,
    ErrorBody,
    Frame,
    InputPart,
    Media,
    encode_error,
    encode_frame,
    error_frame,
    frame_schema,
)
from neocode_gateway.protocol._framing import DEFAULT_MAX_FRAME_BYTES, LineFramer
from neocode_gateway.protocol._validate import (
    MAX_NESTING_DEPTH,
    nesting_depth_exceeds,
    parse_frame,
    validate,
)

__all__ = [
    "ACTIONS",
    "ACTION_SET",
    "DEFAULT_MAX_FRAME_BYTES",
    "ERROR_CODES",
    "FRAME_TYPES",
    "INTERNAL_ERROR",
    "INVALID_ACTION",
    "INVALID_FRAME",
    "INVALID_MULTIMODAL_PAYLOAD",
    "MAX_NESTING_DEPTH",
    "MISSING_REQUIRED_FIELD",
    "PERMISSION_DECISIONS",
    "UNSUPPORTED_ACTION",
    "ErrorBody",
    "Frame",
    "FrameError",
    "InputPart",
    "LineFramer",
    "Media",
    "codes",
    "encode_error",
    "encode_frame",
    "error_frame",
    "frame_schema",
    "nesting_depth_exceeds",
    "parse_frame",
    "validate",
]
