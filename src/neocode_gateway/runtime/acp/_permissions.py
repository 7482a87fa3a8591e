"""Permission requests: the agent's request as the sink's, and the decision back as ACP's answer.

The options keep the agent's own ids, names and kinds. The answer is never
wider than the decision: ``allow_once`` is never sent as an ``allow_always``
option, and a decision with no option that matches it cancels the turn
(``cancelled`` is, in ACP, the answer of a cancelled turn) rather than being
sent as something else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from neocode_gateway.runtime._port import PermissionOption, PermissionOutcome
from neocode_gateway.runtime.acp._mapping import tool_call_fields

PERMISSION_KINDS: Final = frozenset({"allow_once", "allow_always", "reject_once", "reject_always"})
#: The option kinds a decision may be answered with, in order of preference: never a wider one.
DECISION_KINDS: Final[dict[str, tuple[str, ...]]] = {
    "allow_once": ("allow_once",),
    "allow_session": ("allow_always", "allow_once"),
    "reject": ("reject_once", "reject_always"),
}


def permission_request(params: Mapping[str, Any]) -> tuple[dict[str, Any], list[PermissionOption]]:
    """``session/request_permission`` params -> (the tool call, the options as given).

    The options keep the agent's ids, names and kinds: agents and their
    versions differ (``allow``/``allow_always``/``reject`` with Claude,
    ``approved``/``abort`` with Codex...), and the answer must name one of them.
    """
    raw_tool = params.get("toolCall")
    tool = tool_call_fields(raw_tool if isinstance(raw_tool, Mapping) else {}, complete=False)
    options: list[PermissionOption] = []
    raw_options = params.get("options")
    for option in raw_options if isinstance(raw_options, list) else []:
        if not isinstance(option, Mapping) or not isinstance(option.get("optionId"), str):
            continue
        options.append(
            PermissionOption(
                option_id=option["optionId"],
                name=str(option.get("name", option["optionId"])),
                kind=str(option.get("kind", "")),
            )
        )
    return tool, options


def permission_answer(outcome: PermissionOutcome) -> dict[str, Any]:
    """The ``session/request_permission`` result for an outcome: ``selected`` or ``cancelled``."""
    if outcome.cancelled:
        return {"outcome": {"outcome": "cancelled"}}
    return {"outcome": {"outcome": "selected", "optionId": outcome.option_id}}


CANCELLED_ANSWER: Final = {"outcome": {"outcome": "cancelled"}}


@dataclass(frozen=True, slots=True)
class PermissionChoice:
    """What goes back to the agent for a decision, and what the bridge must do besides."""

    answer: dict[str, Any]
    kind: str | None  # the kind of the option sent; None: cancelled
    end_turn: bool = False  # cancelled for want of an option: the turn must be cancelled too
    note: str | None = None  # why the option sent is not the one the decision named


def permission_choice(
    outcome: PermissionOutcome, options: Sequence[PermissionOption]
) -> PermissionChoice:
    """The answer to a permission request: never wider than the decision.

    An option the client named by id goes as chosen. Otherwise the option must
    be of a kind the decision allows (``allow_once`` never becomes
    ``allow_always``); failing that, an allow falls back to a reject option,
    and a decision with no option at all is answered ``cancelled`` with
    ``end_turn`` (``cancelled`` means the turn is cancelled: it must be).
    """
    if outcome.decided_by == "cancel" or (outcome.cancelled and outcome.decision is None):
        return PermissionChoice(dict(CANCELLED_ANSWER), None)
    kinds = {o["option_id"]: o["kind"] for o in options}
    allowed = DECISION_KINDS.get(outcome.decision or "", ())
    chosen = outcome.option_id
    if chosen in kinds and (kinds[chosen] in allowed or kinds[chosen] not in PERMISSION_KINDS):
        return PermissionChoice(_selected(chosen), kinds[chosen])
    note = None if chosen is None else f"option {chosen!r} is wider than {outcome.decision}"
    fallbacks = allowed + (() if outcome.decision == "reject" else DECISION_KINDS["reject"])
    for kind in fallbacks:
        for option in options:
            if option["kind"] == kind:
                if kind not in allowed:
                    note = f"no option allows {outcome.decision}: rejected"
                return PermissionChoice(_selected(option["option_id"]), kind, note=note)
    return PermissionChoice(
        dict(CANCELLED_ANSWER),
        None,
        end_turn=True,
        note=f"no option matches {outcome.decision}: the turn is cancelled",
    )


def _selected(option_id: str) -> dict[str, Any]:
    return {"outcome": {"outcome": "selected", "optionId": option_id}}
