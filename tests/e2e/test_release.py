"""The release pipeline against a real registry (issue 25 items 1 and 2).

A local registry (distribution v3, the code of registry:3, built by
``hack/release/tools/build.sh``) serves TLS on 127.0.0.1 with a certificate from its own CA.
``make release`` pushes the multi-arch image index and the chart into it, signs both with a
cosign key pair made here, and attaches the SBOMs. Then: ``cosign verify --key`` checks both
signatures (and refuses another key), the SBOMs are found through the registry's referrers API
and as signed attestations, and on the dev node containerd pulls the image from the registry
(its hosts configuration trusting the CA) while ``helm install oci://...`` installs the chart;
Pattern A lands.

The registry listens on loopback only: the node's containerd, which pulls the images, is a
process in this host's network namespace (the pods are on the node's bridge, but they never
talk to the registry), so 127.0.0.1 is where it reaches the registry.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from moonlander_dev import node as devnode
from moonlander_dev import pki
from moonlander_dev.clusters import ControlPlaneError, free_port

from .test_node import CHILD, NS, RELEASE, ROOT, NodeEnv, _version, host_state, land_pattern_a

pytestmark = pytest.mark.timeout(3600)  # a cold machine builds the tools and both images

PREFIX = "moonlander-e2e"  # REGISTRY=host:port/prefix: the prefix is part of every name
SBOM_TYPE = "application/vnd.dev.cosign.artifact.sbom.v1+json"
TRUSTED_ROOT = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
PASSWORD = "release-e2e-password"  # the throwaway key pair's password


def _fail(what: str, proc: subprocess.CompletedProcess[str]) -> None:
    pytest.fail(f"{what} failed ({proc.returncode}):\n{proc.stderr[-4000:]}", pytrace=False)


def release_tools(*modules: str) -> dict[str, Path]:
    proc = subprocess.run(
        ["bash", str(ROOT / "hack" / "release" / "tools" / "build.sh"), *modules],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        _fail("hack/release/tools/build.sh", proc)
    return {m: Path(d) / m for m, d in (line.split() for line in proc.stdout.splitlines())}


@dataclass
class Registry:
    """distribution's registry on 127.0.0.1 with TLS from its own CA."""

    directory: Path
    binary: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        ca = pki.CertificateAuthority("moonlander-e2e-registry-ca")
        serving = ca.issue("127.0.0.1", server=True)
        self.ca.write_bytes(ca.cert_pem)
        (self.directory / "tls.crt").write_bytes(serving.cert_pem)
        (self.directory / "tls.key").write_bytes(serving.key_pem)
        self.port = free_port()
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.directory / "data")},
                "delete": {"enabled": True},
            },
            "http": {
                "addr": self.host,
                "tls": {
                    "certificate": str(self.directory / "tls.crt"),
                    "key": str(self.directory / "tls.key"),
                },
            },
        }
        (self.directory / "config.json").write_text(json.dumps(config))  # YAML reads JSON
        log = (self.directory / "registry.log").open("wb")
        env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
        self.process = subprocess.Popen(
            [str(self.binary), "serve", str(self.directory / "config.json")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the registry exited:\n{self.log()}", pytrace=False)
            try:
                status, _, _ = self.get("/v2/")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        pytest.fail(f"the registry did not answer on {self.host}:\n{self.log()}", pytrace=False)

    def log(self) -> str:
        return (self.directory / "registry.log").read_text(errors="replace")[-3000:]

    def get(self, path: str, accept: str = "*/*") -> tuple[int, dict[str, str], bytes]:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        req = urllib.request.Request(f"https://{self.host}{path}", headers={"Accept": accept})
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:  # noqa: S310
            return resp.status, dict(resp.headers), resp.read()

    def json(self, path: str, accept: str) -> Any:
        return json.loads(self.get(path, accept)[2])

    def referrers(self, repo: str, digest: str) -> tuple[Any, str]:
        """The referrers of ``digest`` as an OCI 1.1 client finds them: the referrers API, and
        where a registry answers it with 404 (distribution v3.1.2 has no such endpoint), the
        referrers tag schema, an index under the tag ``sha256-<hex>`` that the pushing client
        (cosign, through go-containerregistry) keeps."""
        index = "application/vnd.oci.image.index.v1+json"
        try:
            return self.json(f"/v2/{repo}/referrers/{digest}", index), "the referrers API"
        except urllib.error.HTTPError as err:
            if err.code != 404:
                raise
        tag = digest.replace(":", "-")
        return self.json(f"/v2/{repo}/manifests/{tag}", index), f"the tag schema ({tag})"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Released:
    registry: Registry
    cosign: Path
    keys: Path  # cosign.key / cosign.pub, and other.pub (a key that did not sign)
    out: Path
    facts: dict[str, str]  # release.env
    printed: str

    @property
    def image(self) -> str:
        return self.facts["IMAGE"]

    @property
    def chart(self) -> str:
        return self.facts["CHART"].removeprefix("oci://")

    def cosign_run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """cosign with the registry's CA; verify-commands also with an empty trusted root, so
        that cosign does not ask sigstore's TUF repository for one (the key is all it needs)."""
        extra = ["--registry-cacert", str(self.registry.ca)]
        if args[0].startswith("verify"):
            extra += ["--trusted-root", str(self.keys / "empty-trusted-root.json")]
        proc = subprocess.run(
            [str(self.cosign), *args, *extra],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check and proc.returncode != 0:
            _fail(f"cosign {args[0]}", proc)
        assert "TUF" not in proc.stderr, proc.stderr  # nothing asked of sigstore's services
        return proc


def _key_pair(cosign: Path, prefix: Path) -> None:
    proc = subprocess.run(
        [str(cosign), "generate-key-pair", "--output-key-prefix", str(prefix)],
        env={**os.environ, "COSIGN_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        _fail("cosign generate-key-pair", proc)


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Released]:
    work = tmp_path_factory.mktemp("release")
    tools = release_tools("registry", "cosign")
    (work / "registry").mkdir()
    registry = Registry(work / "registry", tools["registry"])
    registry.start()
    try:
        keys = work / "keys"
        keys.mkdir()
        _key_pair(tools["cosign"], keys / "cosign")
        _key_pair(tools["cosign"], keys / "other")
        (keys / "empty-trusted-root.json").write_text(json.dumps({"mediaType": TRUSTED_ROOT}))
        out = work / "out"
        env = {
            **os.environ,
            "COSIGN_KEY": str(keys / "cosign.key"),
            "COSIGN_PASSWORD": PASSWORD,
            "REGISTRY_CA": str(registry.ca),
            "RELEASE_OUT": str(out),
        }
        args = ["make", "release", f"REGISTRY={registry.host}/{PREFIX}", f"VERSION={_version()}"]
        started = time.monotonic()
        proc = subprocess.run(
            args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000, check=False
        )
        if proc.returncode != 0:
            _fail(shlex.join(args), proc)
        took = time.monotonic() - started
        print(f"\n{shlex.join(args)}: {took:.0f}s\n{proc.stdout.strip()}")
        facts = dict(
            line.split("=", 1) for line in (out / "release.env").read_text().splitlines() if line
        )
        yield Released(registry, tools["cosign"], keys, out, facts, proc.stdout)
    finally:
        registry.stop()


def test_the_index_and_the_chart_are_in_the_registry(released: Released) -> None:
    reg, facts = released.registry, released.facts
    digest = facts["IMAGE_DIGEST"]
    assert facts["IMAGE"] == f"{reg.host}/{PREFIX}/moonlander"
    assert f"image index: {facts['IMAGE']}:{_version()}@{digest}" in released.printed
    assert f"@{facts['CHART_DIGEST']}" in released.printed
    repo = f"{PREFIX}/moonlander"
    # The tag and the digest name the same index, of both architectures.
    _, headers, body = reg.get(
        f"/v2/{repo}/manifests/{_version()}", "application/vnd.oci.image.index.v1+json"
    )
    assert headers["Docker-Content-Digest"] == digest
    index = json.loads(body)
    platforms = sorted(
        (m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]
    )
    assert platforms == [("linux", "amd64"), ("linux", "arm64")]
    # The chart: an OCI artifact of Helm's media types, its version and the image it defaults to.
    chart = reg.json(
        f"/v2/{PREFIX}/charts/moonlander/manifests/{facts['CHART_DIGEST']}",
        "application/vnd.oci.image.manifest.v1+json",
    )
    assert chart["config"]["mediaType"] == "application/vnd.cncf.helm.config.v1+json"
    config = reg.json(f"/v2/{PREFIX}/charts/moonlander/blobs/{chart['config']['digest']}", "*/*")
    assert (config["name"], config["version"], config["appVersion"]) == (
        "moonlander",
        _version(),
        _version(),
    )


def test_cosign_verifies_both_signatures(released: Released) -> None:
    pub = str(released.keys / "cosign.pub")
    for ref, digest in (
        (released.image, released.facts["IMAGE_DIGEST"]),
        (f"{released.chart}", released.facts["CHART_DIGEST"]),
    ):
        proc = released.cosign_run(
            "verify", "--key", pub, "--insecure-ignore-tlog=true", f"{ref}@{digest}"
        )
        print(f"\ncosign verify --key cosign.pub {ref}@{digest}:\n{proc.stderr.strip()}")
        signed = json.loads(proc.stdout)
        assert [s["critical"]["image"]["docker-manifest-digest"] for s in signed] == [digest]
        assert signed[0]["optional"]["org.opencontainers.image.version"] == _version()
        # A key that signed nothing is refused.
        other = released.cosign_run(
            "verify",
            "--key",
            str(released.keys / "other.pub"),
            "--insecure-ignore-tlog=true",
            f"{ref}@{digest}",
            check=False,
        )
        assert other.returncode != 0
        assert "no signatures found" in other.stderr or "invalid signature" in other.stderr, (
            other.stderr
        )


def _spdx_packages(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, version) of the packages an SPDX document lists, less the image itself (the
    package the document DESCRIBES)."""
    rels = doc["relationships"]
    described = {r["relatedSpdxElement"] for r in rels if r["relationshipType"] == "DESCRIBES"}
    return [
        (p["name"], p.get("versionInfo", ""))
        for p in doc["packages"]
        if p["SPDXID"] not in described
    ]


def test_the_sboms_are_referrers_and_signed_attestations(released: Released) -> None:
    reg, facts = released.registry, released.facts
    digest = facts["IMAGE_DIGEST"]
    # The index's referrers, one SBOM per architecture, found as the OCI 1.1 distribution
    # spec tells a client to find them.
    referrers, how = reg.referrers(f"{PREFIX}/moonlander", digest)
    print(f"\nreferrers of {digest}: {how}")
    sboms = [m for m in referrers["manifests"] if m.get("artifactType") == SBOM_TYPE]
    assert len(sboms) == 2, referrers
    counts = []
    for ref in sboms:
        manifest = reg.json(
            f"/v2/{PREFIX}/moonlander/manifests/{ref['digest']}",
            "application/vnd.oci.image.manifest.v1+json",
        )
        assert manifest["subject"]["digest"] == digest
        (layer,) = manifest["layers"]
        assert layer["mediaType"] == "text/spdx+json"
        doc = reg.json(f"/v2/{PREFIX}/moonlander/blobs/{layer['digest']}", "*/*")
        assert doc["spdxVersion"].startswith("SPDX-")
        found = _spdx_packages(doc)
        counts.append(len(found))
        packages = dict(found)
        # What the image really holds: the Debian base's packages and the controller's venv.
        assert packages.get("moonlander") == _version(), sorted(packages)[:50]
        for name in ("python3.11", "libc6", "ca-certificates", "lightkube", "cryptography"):
            assert name in packages, name
    assert sorted(counts) == sorted(int(facts[f"SBOM_PACKAGES_{a}"]) for a in ("AMD64", "ARM64"))
    assert min(counts) > 100, counts
    print(f"\nSBOM packages (referrers): {counts}")

    # The same documents as in-toto attestations signed with the release key.
    proc = released.cosign_run(
        "verify-attestation",
        "--key",
        str(released.keys / "cosign.pub"),
        "--type",
        "spdxjson",
        "--insecure-ignore-tlog=true",
        f"{released.image}@{digest}",
    )
    statements = [
        json.loads(base64.b64decode(json.loads(line)["payload"]))
        for line in proc.stdout.splitlines()
        if line.strip()
    ]
    assert sorted(len(_spdx_packages(s["predicate"])) for s in statements) == sorted(counts)
    for s in statements:
        assert s["predicateType"] == "https://spdx.dev/Document"
        assert [x["digest"]["sha256"] for x in s["subject"]] == [digest.split(":", 1)[1]]


def host_state_between_nodes() -> dict[str, Any]:
    """test_node's host_state, read while holding the dev node lock: on a machine shared with
    other test sessions, another session's node may start as soon as this one has stopped."""
    fd = devnode._acquire_lock(time.monotonic() + devnode.NODE_LOCK_TIMEOUT)
    try:
        return host_state()
    finally:
        os.close(fd)


def _hosts_toml(registry: Registry, directory: Path) -> Path:
    """containerd's hosts directory: the registry, over HTTPS, trusting its CA only."""
    host_dir = directory / registry.host
    host_dir.mkdir(parents=True)
    (host_dir / "hosts.toml").write_text(
        f'server = "https://{registry.host}"\n\n'
        f'[host."https://{registry.host}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
        f'  ca = "{registry.ca}"\n'
    )
    return directory


def test_the_node_pulls_the_image_and_helm_installs_the_chart_from_the_registry(
    released: Released, tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path_factory.mktemp("release-node")
    hosts = _hosts_toml(released.registry, work / "certs.d")
    before = host_state_between_nodes()
    digest = released.facts["IMAGE_DIGEST"]
    try:
        with devnode.running(work, ["parent", CHILD], registry_hosts=hosts) as (plane, node):
            env = NodeEnv(plane, node, work, _version())
            env.run("kubectl", "create", "namespace", NS)
            env.run(
                *("kubectl", "-n", NS, "create", "secret", "generic"),
                "moonlander-parent-kubeconfig",
                "--from-file=kubeconfig=/dev/stdin",
                input=env.pod_kubeconfig("parent"),
            )
            started = time.monotonic()
            env.run(
                *("helm", "install", RELEASE, f"oci://{released.chart}"),
                *("--version", _version(), "--ca-file", str(released.registry.ca)),
                *("-n", NS, "--wait", "--timeout=300s"),
            )
            print(
                f"\nhelm install oci://{released.chart}: Ready in {time.monotonic() - started:.1f}s"
            )
            pods = env.pods()
            assert pods
            for pod in pods:
                (container,) = pod["spec"]["containers"]
                # The released chart's default: the image by the digest that was signed.
                assert container["image"] == f"{released.image}@{digest}"
                (status,) = pod["status"]["containerStatuses"]
                assert status["ready"], status
                assert status["imageID"].endswith(digest), status
            # containerd pulled it from the registry (nothing was imported but the pause image).
            images = subprocess.run(
                ["ctr", "--address", str(node.socket), "-n", "k8s.io", "images", "ls", "-q"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            assert f"{released.image}@{digest}" in images, images
            land_pattern_a(env)
    except ControlPlaneError as err:
        pytest.fail(f"the node did not start: {err}", pytrace=False)
    assert host_state_between_nodes() == before, "the node left the host changed"
