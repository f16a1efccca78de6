"""Security and hostile inputs through the real `evalx` command (issue 15, items 2, 3, 6-9):
user code refused by `--safe` and reported, not crashed on; bad request files caught before
any call; credentials kept out of URLs; errors that never repeat another file; manifests
without the checkout's path or the hostname; inputs that cannot hang or exhaust evalx."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from harness.live.devserver import DevServer

RunEvalx = Callable[..., subprocess.CompletedProcess[str]]
ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scenarios" / "replay-demo.yaml"
CASSETTES = ROOT / "fixtures" / "cassettes"
ROUTER = ROOT / "examples" / "custom_router" / "suite.yaml"
SAFE_HINT = (
    "--safe refuses suites that import or run code; review that code, then run without "
    "--safe in an isolated job"
)
SMALL = """\
name: small
traffic:
  requests: 30
  mix:
    routine: {weight: 0.7}
    moderate: {weight: 0.2}
    hard: {weight: 0.1}
models:
  a: {tier: fast, quality: {routine: 0.9}}
  b: {tier: balanced, quality: {routine: 0.9}}
  c: {tier: premium, quality: {routine: 0.9}}
"""


def demo_flags(url: str) -> list[str]:
    return [
        a for m in ("small", "medium", "large") for a in ("--set", f"models.{m}.base_url={url}")
    ]


# ----------------------------------------------------------------------------- user code


def test_a_non_factory_is_a_usage_error_not_a_bug(evalx: RunEvalx, tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(SMALL, encoding="utf-8")
    for command in ("validate", "run"):
        out = ["--out", tmp_path / "o"] if command == "run" else []
        proc = evalx(command, suite, "--set", "stack.factory=os:system", *out)
        assert (proc.returncode, proc.stderr) == (
            2,
            "error: stack.factory: os:system(suite) raised TypeError: expected str, bytes or "
            "os.PathLike object, not Suite; a factory takes the Suite and returns an object "
            "with handle(request)\n",
        )
    assert not (tmp_path / "o").exists()


def line_of(path: Path, start: str) -> int:
    """The line number of the first line of `path` that starts with `start`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, text in enumerate(lines, 1) if text.startswith(start))


def test_safe_refuses_a_factory_before_importing_it(evalx: RunEvalx, tmp_path: Path) -> None:
    rel = ROUTER.relative_to(ROOT)
    line = line_of(ROUTER, '  factory: "my_router:make_stack"')
    expected = (
        f"error: {rel}:{line}: stack.factory: would run user code: imports and calls "
        f"my_router:make_stack; {SAFE_HINT}\n"
    )
    for command in ("validate", "run"):
        out = ["--out", tmp_path / "o"] if command == "run" else []
        proc = evalx(command, rel, "--safe", *out, cwd=ROOT)
        assert (proc.returncode, proc.stderr) == (2, expected)
    assert not (tmp_path / "o").exists()
    assert evalx("validate", rel, cwd=ROOT).returncode == 0  # without --safe it is fine


def test_safe_names_every_place_that_runs_code(evalx: RunEvalx, tmp_path: Path) -> None:
    (tmp_path / "requests.jsonl").write_text(
        '{"text": "hi"}\n{"text": "yo", "assert": [{"type": "python", "value": "chk:ok"}]}\n',
        encoding="utf-8",
    )
    suite = tmp_path / "suite.yaml"
    text = SMALL.replace("requests: 30", "file: requests.jsonl")
    suite.write_text(text + 'tools:\n  t: {function: "mytools:lookup"}\n', encoding="utf-8")
    proc = evalx("validate", suite, "--safe", "--set", "stack.factory=evil:make")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: {suite}:3: traffic.file: would run user code: line 2 of the requests file "
        f"imports and calls the python assertion chk:ok; {SAFE_HINT}",
        f"error: {suite}:13: tools.t.function: would run user code: imports and calls "
        f"mytools:lookup; {SAFE_HINT}",
        f"error: --set: stack.factory: would run user code: imports and calls evil:make; "
        f"{SAFE_HINT}",
    ]


# ----------------------------------------------------------------------------- request files

BAD_LINES = {
    '{"text": "hi", "labels": 5}': (
        "labels: expected a list of label names; "
        "labels: pii, prompt_injection, prohibited_action, high_impact"
    ),
    '{"text": "hi", "assert": [{"type": "regex", "value": "("}]}': (
        "assert.0.value: invalid regular expression: missing ), unterminated subpattern at "
        'position 0; escape a character meant literally with a backslash ("\\\\(" in JSON)'
    ),
    '{"text": "hi", "assert": [{"type": "python", "value": "nosuchmod:f"}]}': (
        "assert.0.value: cannot import 'nosuchmod' (No module named 'nosuchmod'); "
        "install the module or put it on PYTHONPATH"
    ),
}


def bad_requests(tmp_path: Path, line: str) -> Path:
    """The demo's requests with one bad line after the first."""
    good = (ROOT / "fixtures" / "requests" / "replay-demo.jsonl").read_text(encoding="utf-8")
    first, *rest = good.splitlines()
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join([first, line, *rest]) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("line", list(BAD_LINES))
def test_replay_refuses_a_bad_request_line(evalx: RunEvalx, tmp_path: Path, line: str) -> None:
    requests = bad_requests(tmp_path, line)
    proc = evalx("run", DEMO, "--replay", CASSETTES, "--set", f"traffic.file={requests}",
                 "--out", tmp_path / "run", "-q", env={"EVALX_DEMO_KEY": ""})  # fmt: skip
    assert (proc.returncode, proc.stderr) == (2, f"error: {requests}:2: {BAD_LINES[line]}\n")
    assert not (tmp_path / "run").exists()


def test_record_refuses_a_bad_request_line_before_any_call(evalx: RunEvalx, tmp_path: Path) -> None:
    line = '{"text": "hi", "assert": [{"type": "python", "value": "nosuchmod:f"}]}'
    requests = bad_requests(tmp_path, line)
    with DevServer(api_key="sk-test") as srv:
        proc = evalx("record", DEMO, *demo_flags(srv.base_url), "--set",
                     f"traffic.file={requests}", "--cassettes", tmp_path / "cassettes",
                     "--out", tmp_path / "rec", env={"EVALX_DEMO_KEY": "sk-test"})  # fmt: skip
        assert srv.requests == []  # nothing was sent, nothing paid
    assert (proc.returncode, proc.stderr) == (2, f"error: {requests}:2: {BAD_LINES[line]}\n")
    assert not (tmp_path / "cassettes").exists()


def test_record_needs_its_keys_before_any_call(evalx_exe: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EVALX_DEMO_KEY"}
    with DevServer(api_key="sk-test") as srv:
        proc = subprocess.run(
            [str(evalx_exe), "record", str(DEMO), *demo_flags(srv.base_url),
             "--cassettes", str(tmp_path / "c")],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert srv.requests == []
    line = line_of(DEMO, "    api_key_env: EVALX_DEMO_KEY")  # models.small's
    assert (proc.returncode, proc.stderr) == (
        2,
        f"error: {DEMO}:{line}: models.small.api_key_env: $EVALX_DEMO_KEY is not set; "
        "export EVALX_DEMO_KEY=... before calling the endpoint (and 2 more problems)\n",
    )


# ----------------------------------------------------------------------------- secrets and paths


def test_credentials_in_a_base_url_are_refused(evalx: RunEvalx, tmp_path: Path) -> None:
    secret = "sk-live-9f8e7d6c5b4a"
    flags = demo_flags(f"http://user:{secret}@127.0.0.1:9/v1")
    proc = evalx("record", DEMO, *flags, "--cassettes", tmp_path / "c",
                 env={"EVALX_DEMO_KEY": "x"})  # fmt: skip
    assert (proc.returncode, proc.stderr) == (
        2,
        "error: --set: models.small.base_url: the URL holds credentials (user:password@host); "
        "remove them and name the environment variable holding the key with api_key_env "
        "(and 2 more problems)\n",
    )
    assert secret not in proc.stdout + proc.stderr
    assert not (tmp_path / "c").exists()
    proc = evalx("validate", DEMO, *demo_flags(f"http://127.0.0.1:9/v1?api_key={secret}"))
    assert proc.returncode == 2 and secret not in proc.stderr
    assert "the URL holds a key in its query string" in proc.stderr


def test_errors_never_repeat_another_files_content(evalx: RunEvalx, tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(SMALL, encoding="utf-8")
    proc = evalx("validate", suite, "--set", "policies.file=/etc/passwd")
    assert (proc.returncode, proc.stderr) == (
        2,
        "error: /etc/passwd:1: expected a mapping of policy keys at the top level, got text; "
        "start the file with `key: value` lines\n",
    )
    (tmp_path / "keys.csv").write_text("sk-live-abc:def/ghi\n1\n", encoding="utf-8")
    proc = evalx("validate", suite, "--set", "traffic.log={path: keys.csv, columns: {text: q}}")
    assert proc.returncode == 2
    assert "sk-live" not in proc.stderr
    assert proc.stderr.endswith("its first line does not look like a header of column names\n")


def test_manifest_holds_paths_relative_to_the_suite_and_no_host(
    evalx: RunEvalx, tmp_path: Path
) -> None:
    shutil.copytree(ROUTER.parent, tmp_path / "router")
    proc = evalx("run", "router/suite.yaml", "--set", "traffic.requests=200",
                 "--out", "run", "-q", "--no-report", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "run" / "manifest.json").read_text(encoding="utf-8")
    manifest = json.loads(text)
    assert manifest["parameters"]["stack.factory_path"]["value"] == ["."]
    assert manifest["parameters"]["stack.factory"]["value"] == "my_router:make_stack"
    assert str(tmp_path) not in text  # nothing of the checkout's location
    assert "host" not in manifest
    proc = evalx("run", "router/suite.yaml", "--set", "traffic.requests=200",
                 "--out", "run2", "-q", "--no-report", cwd=tmp_path,
                 env={"EVALX_RECORD_HOST": "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    again = json.loads((tmp_path / "run2" / "manifest.json").read_text(encoding="utf-8"))
    assert again["host"] == platform.node()
    assert again["suite_hash"] == manifest["suite_hash"]


def test_the_suite_hash_does_not_depend_on_the_checkout(evalx: RunEvalx, tmp_path: Path) -> None:
    hashes = []
    for where in ("one", "two/deeper"):
        router = tmp_path / where
        shutil.copytree(ROUTER.parent, router)
        proc = evalx("run", router / "suite.yaml", "--set", "traffic.requests=50",
                     "--out", router / "run", "-q", "--no-report")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        manifest = json.loads((router / "run" / "manifest.json").read_text(encoding="utf-8"))
        hashes.append(manifest["suite_hash"])
    assert hashes[0] == hashes[1]


# ----------------------------------------------------------------------------- hostile inputs


def test_a_fifo_suite_fails_at_once(evalx: RunEvalx, tmp_path: Path) -> None:
    fifo = tmp_path / "suite.yaml"
    os.mkfifo(fifo)
    start = time.perf_counter()
    proc = evalx("validate", fifo)
    assert time.perf_counter() - start < 30
    assert (proc.returncode, proc.stderr) == (
        2,
        f"error: {fifo}: is a named pipe (FIFO), not a suite file; name a regular file\n",
    )


def test_dev_zero_as_suite_or_requests_file(evalx: RunEvalx, tmp_path: Path) -> None:
    proc = evalx("validate", "/dev/zero")
    assert (proc.returncode, proc.stderr) == (
        2,
        "error: /dev/zero: is a character device, not a suite file; name a regular file\n",
    )
    suite = tmp_path / "suite.yaml"
    suite.write_text(SMALL, encoding="utf-8")
    proc = evalx("run", suite, "--set", "traffic.file=/dev/zero", "--out", tmp_path / "o")
    assert (proc.returncode, proc.stderr) == (
        2,
        "error: /dev/zero: is a character device, not a requests file (JSON lines); "
        "name a regular file\n",
    )


def test_billion_laughs_fails_fast_naming_the_limit(evalx: RunEvalx, tmp_path: Path) -> None:
    lines = ["name: lol", 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    suite = tmp_path / "lol.yaml"
    suite.write_text("\n".join(lines) + "\n", encoding="utf-8")
    start = time.perf_counter()
    proc = evalx("validate", suite)
    assert time.perf_counter() - start < 30
    assert (proc.returncode, proc.stderr) == (
        2,
        f"error: {suite}:7: this value holds 597,871 values once its aliases are expanded, "
        "over the limit of 100,000 values (EVALX_MAX_YAML_VALUES raises it); "
        "use fewer aliases: each *name repeats its anchor's value\n",
    )


def test_deep_nesting_is_exit_2(evalx: RunEvalx, tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(SMALL + "description: " + "[" * 300 + "]" * 300 + "\n", encoding="utf-8")
    proc = evalx("validate", suite)
    note = "nested too deep, over the limit of 64 levels (EVALX_MAX_DEPTH raises it)"
    assert (proc.returncode, proc.stderr) == (2, f"error: {suite}:12: {note}; flatten the value\n")
    gates = tmp_path / "gates.yaml"
    gates.write_text("alpha: " + "[" * 2000 + "]" * 2000 + "\n", encoding="utf-8")
    proc = evalx("compare", tmp_path / "a", tmp_path / "b", "--gates", gates)
    assert (proc.returncode, proc.stderr) == (2, f"error: {gates}:1: {note}; flatten the value\n")


def test_a_non_finite_weight_is_refused(evalx: RunEvalx, tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(SMALL.replace("{weight: 0.7}", "{weight: .inf}"), encoding="utf-8")
    proc = evalx("run", suite, "--out", tmp_path / "o")
    assert (proc.returncode, proc.stderr) == (
        2,
        f"error: {suite}:5: traffic.mix.routine.weight: .inf is not a finite number; write a "
        "finite number (e.g. 1e9 for a very large one); .inf and .nan are refused\n",
    )


# ----------------------------------------------------------------------------- the model, written


def test_readme_states_the_security_model() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Security: what runs code, and gating untrusted changes\n")[1]
    section = section.split("\n## ")[0]
    for needed in ("stack.factory", "python", "function", "pull_request_target", "--safe",
                   "contents: write", "api_key_env", "EVALX_RECORD_HOST"):  # fmt: skip
        assert needed in section, needed


def test_example_workflow_grants_write_only_to_the_rerecord_job() -> None:
    workflow = yaml.safe_load((ROOT / "examples" / "ci" / "github-actions.yml").read_text())
    assert workflow["permissions"] == {"contents": "read"}
    writers = [
        name
        for name, job in workflow["jobs"].items()
        if job.get("permissions", {}).get("contents") == "write"
    ]
    assert writers == ["rerecord"]
    gate = workflow["jobs"]["gate"]
    assert gate["permissions"] == {"contents": "read", "checks": "write"}
    checkout = next(s for s in gate["steps"] if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["persist-credentials"] is False
    assert "pull_request_target" not in workflow[True]  # `on:` reads as True in YAML 1.1
