"""The published contract: docs/frame.schema.json and docs/protocol.md match the code."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from neocode_gateway.cli import main
from neocode_gateway.cli._client_commands import schema_text
from neocode_gateway.protocol import ERROR_CODES, Frame, codes, frame_schema

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_committed_schema_is_up_to_date() -> None:
    committed = (DOCS / "frame.schema.json").read_text()
    assert committed == schema_text(), (
        "docs/frame.schema.json is out of date with the frame types; run: make schema"
    )


def test_schema_command_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == schema_text()


def test_schema_describes_every_frame_field() -> None:
    schema = frame_schema()
    frame = schema["$defs"]["Frame"]
    assert schema["$ref"] == "#/$defs/Frame"
    assert set(frame["properties"]) == {f.name for f in msgspec.structs.fields(Frame)}
    assert json.loads(schema_text()) == schema


def test_protocol_doc_names_every_error_code_and_message() -> None:
    text = (DOCS / "protocol.md").read_text()
    for code in ERROR_CODES:
        assert f"`{code}`" in text, code
    messages = [value for name, value in vars(codes).items() if name.startswith("MSG_") and value]
    messages += [codes.msg_frame_too_large(1048576), codes.msg_missing_field("action")]
    for message in messages:
        assert message in text, message
    assert "frame.schema.json" in text
