"""``moonlander`` without a cluster: argument parsing, exit codes and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from moonlander.cli import main as cli
from moonlander.cli.errors import Exit


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exit_:  # argparse's usage errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    assert err.startswith("error: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture(autouse=True)
def no_kubeconfig(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["check"], "give a FILE"),
        (["check", "f", "--secret", "a/b"], "not both"),
        (["check", "f", "--context", "x"], "--context applies only with --secret"),
        (["check", "f", "-n", "x"], "--namespace applies only with --secret"),
        (["check", "--secret", "a/b/c"], "expected NAME or NAMESPACE/NAME"),
        (["check", "f", "-o", "xml"], "invalid choice: 'xml'"),
        (["check", "f", "--allow-network", "10.0.0.0/33"], "--allow-network: '10.0.0.0/33'"),
        (["status", "-A", "-n", "x"], "exclude each other"),
        (["status", "-A", "name"], "needs one namespace"),
        (["status", "--bogus"], "unrecognized arguments: --bogus"),
        (
            ["mint", "--name", "x", "--cluster-role", "view", "-o", "f", "--output-file", "g"],
            "--output takes json or yaml",
        ),
        (["nope"], "invalid choice: 'nope'"),
    ],
)
def test_usage_errors_exit_2_in_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == Exit.USAGE == 2
    assert said in one_line_error(err)
    assert out == ""


def test_check_secret_needs_its_namespace_once(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", "--secret", "a/b", "-n", "c")
    assert code == 2 and "names namespace a, -n says c" in one_line_error(err)


@pytest.mark.parametrize(
    "command",
    [["check", "--secret", "s"], ["status"], ["mint", "--name", "x", "--cluster-role", "view"]],
)
def test_no_kubeconfig_anywhere_exits_3(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    code, _, err = run(capsys, *command)
    assert code == Exit.UNREACHABLE == 3
    assert "pass --kubeconfig FILE or set $KUBECONFIG" in one_line_error(err)


def test_missing_files_exit_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    for argv in (
        ["check", str(missing)],
        ["check", "--secret", "a/b", "--kubeconfig", str(missing)],
        ["status", "--kubeconfig", str(missing)],
        ["mint", "--name", "x", "--cluster-role", "view", "--kubeconfig", str(missing)],
        ["run", "--kubeconfig", str(missing)],
    ):
        code, _, err = run(capsys, *argv)
        assert code == 3, argv
        assert f"{missing}: no such file" in one_line_error(err)


def test_a_directory_is_not_a_kubeconfig(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "check", str(tmp_path))
    assert code == 3 and "is a directory" in one_line_error(err)


def test_unknown_context_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    kc = tmp_path / "kc"
    kc.write_text(
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "contexts: [{name: a, context: {cluster: c}}, {name: b, context: {cluster: c}}]\n"
        "current-context: a\n"
    )
    code, _, err = run(capsys, "status", "--kubeconfig", str(kc), "--context", "prod")
    assert code == 2
    assert "--context prod: no such context in" in one_line_error(err) and "(a, b)" in err


def test_refused_connection_exits_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    kc = tmp_path / "kc"
    kc.write_text(
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "contexts: [{name: a, context: {cluster: c}}]\ncurrent-context: a\n"
    )
    for argv in (
        ["status"],
        ["check", "--secret", "s"],
        ["mint", "--name", "x", "--cluster-role", "view"],
    ):
        code, _, err = run(capsys, *argv, "--kubeconfig", str(kc))
        assert code == 3, argv
        assert "cannot reach the cluster at https://127.0.0.1:1" in one_line_error(err)


def test_check_of_a_file_exit_0_and_1_and_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import json

    from moonlander_dev import pki

    ca = pki.CertificateAuthority("t")
    import base64

    kc = tmp_path / "kc"
    kc.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443', "
        f"certificate-authority-data: {base64.b64encode(ca.cert_pem).decode()}}}}}]\n"
        "users: [{name: u, user: {token: abc}}]\n"
        "contexts: [{name: a, context: {cluster: c, user: u}}]\ncurrent-context: a\n"
    )
    code, out, _ = run(capsys, "check", str(kc), "--allow-loopback")
    assert code == 0 and "OK: server https://127.0.0.1:6443" in out
    code, out, _ = run(capsys, "check", str(kc), "-o", "json")
    assert code == 1
    verdict = json.loads(out)
    assert verdict["usable"] is False
    (problem,) = verdict["problems"]
    assert problem["reason"] == "AddressNotAllowed"
    # flags as the user types them, never the Policy's field names
    assert "--allow-loopback" in problem["message"] or "--allow-network" in problem["message"]
    assert "allowed_networks" not in out and "allow_loopback" not in out
    code, out, _ = run(capsys, "check", str(kc), "--allow-loopback", "-o", "yaml")
    assert code == 0 and "usable: true" in out and "abc" not in out
