"""The permission policy: the issue's example, the order deny > ask > allow > ask, load errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from neocode_gateway.errors import ConfigError
from neocode_gateway.policy import Policy, PolicyError, ToolRequest

EXAMPLE = """
[[policy]]
agents   = ["claude", "codex"]
workdirs = ["/srv/code/**"]
allow = ["read", "search", "execute(git status)", "execute(git diff *)", "edit(src/**)"]
ask   = ["execute(git push *)"]
deny  = ["edit(.env*)", "edit(**/.git/**)", "execute(rm -rf *)"]
"""
WD = "/srv/code/app"  # does not exist: realpath leaves it as it is


@pytest.fixture
def example(tmp_path: Path) -> Policy:
    path = tmp_path / "gateway.toml"
    path.write_text(EXAMPLE)
    return Policy.from_toml(path)


def run(
    policy: Policy,
    kind: str,
    *paths: str,
    command: str | None = None,
    agent: str = "claude",
    workdir: str = WD,
) -> str:
    request = ToolRequest(kind, paths=paths, command=command)
    return policy.decide(request, agent=agent, workdir=workdir).verdict


@pytest.mark.parametrize(
    ("kind", "paths", "command", "verdict"),
    [
        ("read", ("README.md",), None, "allow"),
        ("read", (), None, "allow"),
        ("search", ("src",), None, "allow"),
        ("edit", ("src/app/main.py",), None, "allow"),
        ("edit", (f"{WD}/src/main.py",), None, "allow"),
        ("edit", ("docs/index.md",), None, "ask"),
        ("edit", (".env",), None, "deny"),
        ("edit", ("src/.env.local",), None, "deny"),
        ("edit", ("src/.git/config",), None, "deny"),
        ("edit", ("src/a.py", ".env"), None, "deny"),
        ("edit", ("src/a.py", "docs/b.md"), None, "ask"),
        ("execute", (), "git status", "allow"),
        ("execute", (), "git   status ", "allow"),
        ("execute", (), "git status --short", "ask"),
        ("execute", (), "git diff", "allow"),
        ("execute", (), "git diff HEAD~1 -- src", "allow"),
        ("execute", (), "git push origin main", "ask"),
        ("execute", (), "rm -rf build", "deny"),
        ("execute", (), "git status && git diff", "allow"),
        ("execute", (), "git status; rm -rf /", "deny"),
        ("execute", (), "git status | rm -rf x", "deny"),
        ("execute", (), "git status && make", "ask"),
        ("execute", (), "git diff > patch.txt", "ask"),
        ("execute", (), "git diff 2>&1", "allow"),
        ("execute", (), "echo $(rm -rf /)", "deny"),
        ("execute", (), "FOO=1 rm -rf x", "deny"),
        ("execute", (), None, "ask"),
        ("think", (), None, "ask"),
        ("fetch", (), None, "ask"),
    ],
)
def test_the_issue_example(
    example: Policy, kind: str, paths: tuple[str, ...], command: str | None, verdict: str
) -> None:
    assert run(example, kind, *paths, command=command) == verdict


def test_tables_apply_only_to_their_agents_and_workdirs(example: Policy) -> None:
    assert run(example, "read", "a", agent="claude") == "allow"
    assert run(example, "read", "a", agent="gemini") == "ask"
    assert run(example, "read", "a", workdir="/home/me/elsewhere") == "ask"
    assert run(example, "read", "a", workdir="/srv/code") == "allow"  # "X/**" covers X


def test_decision_names_the_rule_and_where_it_is(example: Policy, tmp_path: Path) -> None:
    request = ToolRequest("execute", command="git status; rm -rf /")
    decision = example.decide(request, agent="codex", workdir=WD)
    assert decision.rule == "execute(rm -rf *)"
    assert decision.source == f"{tmp_path / 'gateway.toml'}:policy[0]"
    assert "rm -rf /" in decision.reason
    both = example.decide(
        ToolRequest("execute", command="git status && git diff"), agent="codex", workdir=WD
    )
    assert both.rule == "execute(git status), execute(git diff *)"
    unmatched = example.decide(ToolRequest("think"), agent="codex", workdir=WD)
    assert (unmatched.rule, unmatched.source) == (None, None)


def test_ask_wins_over_a_broader_allow_and_deny_over_both() -> None:
    policy = Policy.from_tables(
        [
            {"allow": ["execute(git *)"], "ask": ["execute(git push *)"]},
            {"deny": ["execute(git push --force*)"]},
        ]
    )
    assert run(policy, "execute", command="git log") == "allow"
    assert run(policy, "execute", command="git push origin") == "ask"
    assert run(policy, "execute", command="git push --force origin") == "deny"


def test_star_kind_and_kinds_without_specifier() -> None:
    policy = Policy.from_tables([{"allow": ["think", "fetch"], "deny": ["*"]}])
    assert run(policy, "think") == "deny"
    policy = Policy.from_tables([{"allow": ["think", "*"]}])
    assert run(policy, "think") == "allow"
    assert run(policy, "other") == "allow"
    assert run(policy, "read", "/etc/passwd") == "ask"  # even "*" never allows outside


def test_glob_language() -> None:
    policy = Policy.from_tables(
        [
            {
                "allow": [
                    "read(*.py)",
                    "edit(docs/*.md)",
                    "edit(app/[id]/page.tsx)",
                    "move(a?c)",
                    "delete(tmp/)",
                    "search(./lib/**)",
                ]
            }
        ]
    )
    assert run(policy, "read", "deep/down/x.py") == "allow"  # no "/": any depth
    assert run(policy, "edit", "docs/a.md") == "allow"
    assert run(policy, "edit", "docs/sub/a.md") == "ask"  # "*" stays in its segment
    assert run(policy, "edit", "app/[id]/page.tsx") == "allow"  # "[" is literal
    assert run(policy, "move", "abc") == "allow"
    assert run(policy, "move", "abbc") == "ask"
    assert run(policy, "delete", "tmp/a/b") == "allow"  # trailing "/": everything under
    assert run(policy, "search", "lib/x/y") == "allow"


def test_absolute_globs_deny_outside_but_never_allow_outside() -> None:
    policy = Policy.from_tables(
        [{"deny": ["read(/etc/shadow)", "read(~/.ssh/**)"], "allow": ["read(/etc/**)"]}]
    )
    assert run(policy, "read", "/etc/shadow") == "deny"
    assert run(policy, "read", os.path.expanduser("~/.ssh/id_ed25519")) == "deny"
    assert run(policy, "read", "~/.ssh/id_ed25519") == "deny"  # as an agent's tool would expand
    assert run(policy, "read", "/etc/hosts") == "ask"
    assert run(policy, "read", "/etc/hosts", workdir="/etc") == "allow"


def test_relative_deny_globs_do_not_reach_outside() -> None:
    policy = Policy.from_tables([{"deny": ["edit(**)"], "ask": []}])
    assert run(policy, "edit", "/elsewhere/x") == "ask"  # asked by default, not denied
    assert run(policy, "edit", "x") == "deny"


# -- loading and errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"allow": ["edit(src/**"]}, "policy[0].allow[0] 'edit(src/**': unbalanced parentheses"),
        ({"deny": ["edit src/**)"]}, "policy[0].deny[0] 'edit src/**)': unbalanced parentheses"),
        ({"allow": ["write(x)"]}, "policy[0].allow[0] 'write(x)': unknown kind 'write'"),
        ({"allow": ["Bash(ls)"]}, "unknown kind 'Bash'"),
        ({"ask": ["edit()"]}, "policy[0].ask[0] 'edit()': empty specifier"),
        ({"ask": ["execute(  )"]}, "empty specifier"),
        ({"allow": ["think(x)"]}, "'think(x)': kind 'think' takes no specifier"),
        ({"allow": ["*(x)"]}, "kind '*' takes no specifier"),
        ({"allow": ["read", 3]}, "policy[0].allow[1]: expected a string, got an integer"),
        ({"allow": "read"}, "policy[0].allow: expected an array of strings, got a string"),
        ({"allowed": ["read"]}, "policy[0].allowed: unknown key (known: agents, workdirs,"),
        ({"agents": "claude"}, "policy[0].agents: expected an array of strings"),
        ({"workdirs": ["code/**"]}, "policy[0].workdirs[0] 'code/**': must be absolute"),
        ({"deny": [""]}, "policy[0].deny[0]: is empty"),
        ({"deny": ["edit(a) extra"]}, "unbalanced parentheses"),
    ],
)
def test_malformed_rules_are_one_line_naming_the_rule(
    table: dict[str, object], message: str
) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_tables([table], source="gw.toml")
    text = str(info.value)
    assert text.startswith("gw.toml: ")
    assert message in text
    assert "\n" not in text
    assert isinstance(info.value, ConfigError)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    with pytest.raises(PolicyError, match=r"p\.toml: no such file"):
        Policy.from_toml(path)
    path.write_text("[[policy]\n")
    with pytest.raises(PolicyError, match=r"p\.toml: not valid TOML"):
        Policy.from_toml(path)
    path.write_text("policy = 3\n")
    with pytest.raises(PolicyError, match=r"policy: expected an array of tables"):
        Policy.from_toml(path)
    path.write_text("[[policy]]\ndeny = ['read(x']\n")
    with pytest.raises(PolicyError, match=r"p\.toml: policy\[0\]\.deny\[0\] 'read\(x'"):
        Policy.from_toml(path)
    path.write_text("default_agent = 'claude'\n")  # the gateway's own keys are not ours
    assert Policy.from_toml(path).tables == ()


# -- warnings ----------------------------------------------------------------------------


def test_warnings_for_rules_that_never_decide() -> None:
    policy = Policy.from_tables(
        [
            {"ask": ["execute"], "allow": ["execute(git status)", "read", "read"]},
            {"deny": ["edit(**)"], "allow": ["edit(src/**)"], "ask": ["edit(src/**)"]},
            {"agents": ["claude"], "allow": ["execute(ls)"]},
            {"allow": ["execute(git diff:*)"]},
        ],
        source="gw.toml",
    )
    text = "\n".join(policy.warnings)
    assert (
        "gw.toml:policy[0].allow[0] 'execute(git status)' never decides: it is shadowed by "
        "gw.toml:policy[0].ask[0] 'execute'"
    ) in text
    assert "policy[0].allow[2] 'read' never decides: it is a duplicate of" in text
    assert "policy[1].allow[0] 'edit(src/**)' never decides" in text
    assert "policy[1].ask[0] 'edit(src/**)'" not in text  # deny edit(**) misses outside paths
    assert "policy[2].allow[0] 'execute(ls)' never decides" in text  # scope covered
    assert "write 'execute(git diff *)'" in text
    assert "\n" not in "".join(policy.warnings)


def test_no_warnings_when_scopes_differ() -> None:
    policy = Policy.from_tables(
        [
            {"agents": ["codex"], "ask": ["execute"]},
            {"allow": ["execute(ls)"]},
            {"workdirs": ["/a/**"], "deny": ["read"]},
            {"workdirs": ["/b/**"], "allow": ["read"]},
        ]
    )
    assert policy.warnings == []


# -- explain -----------------------------------------------------------------------------


def test_explain_shows_parts_the_decision_and_near_misses(example: Policy) -> None:
    text = example.explain(
        ToolRequest("execute", command="git status && git diff > p"), agent="claude", workdir=WD
    )
    assert "command part 'git status'" in text
    assert "command part 'git diff > p' (opaque" in text
    assert "decision: ASK" in text
    assert "execute(git diff *)" in text
    text = example.explain(ToolRequest("read", paths=("/etc/passwd",)), agent="x", workdir=WD)
    assert "OUTSIDE the workdir" in text
    assert "tables that apply: none" in text
    assert "its table does not apply here" in text


@pytest.fixture(autouse=True)
def _home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/policy-test")


def test_the_package_imports_only_errors_and_the_stdlib() -> None:
    import subprocess
    import sys

    probe = "import sys, neocode_gateway.policy\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    ours = {m for m in out if m.startswith("neocode_gateway.")}
    assert {m for m in ours if not m.startswith("neocode_gateway.policy")} == {
        "neocode_gateway.errors"
    }
    assert "msgspec" not in out
