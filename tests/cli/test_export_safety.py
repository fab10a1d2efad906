"""`kpipe export`: what a review found it doing wrong. No secret in any output however it was written, no
exporting shell's environment in the manifests, no traceback for a path it cannot write, nothing read from
outside the project root, the handler code in the image, no stale manifests, a Job that survives a redeploy,
and pod arguments `kpipe run` accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import kpipe

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "registry.example/orders:1.4.0"
BOOTSTRAP = "KAFKA_BOOTSTRAP_SERVERS=kafka-0.kafka:9092"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "KPIPE_BOOTSTRAP_SERVERS", "KPIPE_DEBUG", "KAFKA_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def one_line_error(code: int, out: str, err: str) -> str:
    assert (code, out) == (2, ""), err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _project(root: Path, cluster_config: str, extra: str = "") -> Path:
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    path = root / "p.yaml"
    path.write_text(
        "cluster:\n  bootstrap_servers: k:9092\n  config:\n    security.protocol: SASL_SSL\n"
        "    sasl.mechanism: PLAIN\n" + cluster_config + "topics:\n  t: {partitions: 2}\n"
        "consumers:\n  g: {topics: [t], handler: m:f}\n" + extra
    )
    return path


# -- 1. a secret value never reaches an output, however it was written -----------------------------------------


def test_a_multi_line_literal_secret_is_refused(tmp_path: Path) -> None:
    project = _project(tmp_path, "    sasl.password: >-\n      folded-secret-value\n")
    err = one_line_error(*kpipe("export", "kubernetes", str(project), "--image", IMAGE))
    assert "the secret value of sasl.password of cluster" in err and "ConfigMap kpipe-files" in err
    assert "folded-secret-value" not in err


def test_a_secret_given_with_var_is_refused(tmp_path: Path) -> None:
    project = _project(tmp_path, '    sasl.password: "{{ pw }}"\n')
    for extra in ((), ("--files-in-image",)):  # the pods' arguments would carry it either way
        err = one_line_error(
            *kpipe("export", "kubernetes", str(project), "--image", IMAGE, "--var", "pw=CLISECRET", *extra)
        )
        assert "sasl.password of cluster" in err and "would be written into Job kpipe-apply-" in err
        assert "CLISECRET" not in err


def test_a_secret_in_a_values_file_is_refused(tmp_path: Path) -> None:
    project = _project(tmp_path, '    sasl.password: "{{ pw }}"\n')
    (tmp_path / "values.yaml").write_text("pw: values-file-secret\n")
    args = ("export", "kubernetes", str(project), "--image", IMAGE, "--values", str(tmp_path / "values.yaml"))
    err = one_line_error(*kpipe(*args))
    assert "ConfigMap kpipe-files" in err and "values-file-secret" not in err
    # In the image, the values file is not published: only its path is passed on.
    code, out, err = kpipe(*args, "--files-in-image")
    assert code == 0, err
    assert "values-file-secret" not in out


def test_the_asyncapi_document_never_holds_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A secret variable's value (and a literal secret) copied into a description would be published.
    monkeypatch.setenv("KAFKA_PASSWORD", "from-the-environment")
    project = _project(
        tmp_path,
        "    sasl.password: \"{{ env('KAFKA_PASSWORD') }}\"\n",
        "    # nothing\n",
    )
    text = project.read_text().replace(
        "t: {partitions: 2}", "t: {partitions: 2, description: \"pw {{ env('KAFKA_PASSWORD') }}\"}"
    )
    project.write_text(text)
    err = one_line_error(*kpipe("export", "asyncapi", str(project)))
    assert "env('KAFKA_PASSWORD')" in err or "sasl.password" in err
    assert "would be written into the AsyncAPI document" in err and "from-the-environment" not in err
    project.write_text(text.replace("description: \"pw {{ env('KAFKA_PASSWORD') }}\"", "description: ok"))
    code, out, err = kpipe("export", "asyncapi", str(project))
    assert code == 0 and "from-the-environment" not in out, err


# -- 2. the exporting shell's environment stays out ------------------------------------------------------------


def test_the_shells_environment_never_reaches_the_manifests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "laptop:9092")
    # The pods do not have the laptop's variable: the files say `local`, which is refused.
    err = one_line_error(*kpipe("export", "kubernetes", "pipelines", "--image", IMAGE, "--keda"))
    assert "bootstrap_servers is 'local'" in err
    code, out, err = kpipe(
        "export", "kubernetes", "pipelines", "--image", IMAGE, "--keda", "--set-env", BOOTSTRAP
    )
    assert code == 0, err
    assert "laptop" not in out
    scaled = [o for o in objects(out) if o["kind"] == "ScaledObject"]
    # KEDA reads the pods' variable, whose value comes from --set-env, never from the shell.
    assert {t["metadata"]["bootstrapServersFromEnv"] for o in scaled for t in o["spec"]["triggers"]} == {
        "KAFKA_BOOTSTRAP_SERVERS"
    }
    [env_map] = [
        o for o in objects(out) if o["metadata"]["labels"]["app.kubernetes.io/component"] == "environment"
    ]
    assert env_map["data"] == {"KAFKA_BOOTSTRAP_SERVERS": "kafka-0.kafka:9092"}


def test_a_secret_variable_is_rendered_with_a_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_PASSWORD", "the-shells-password")
    project = _project(tmp_path, "    sasl.password: \"{{ env('KAFKA_PASSWORD') }}\"\n")
    code, out, err = kpipe("export", "kubernetes", str(project), "--image", IMAGE)
    assert code == 0, err
    assert "the-shells-password" not in out and "placeholder" not in out


# -- 3. a path that cannot be written is one line, exit 2 ------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("graph", "pipelines", "-o", "/proc/kpipe-no-such/x"),
        ("asyncapi", "pipelines", "-o", "/tmp"),
        ("dockerfile", "pipelines", "-o", "/proc/kpipe-no-such/Dockerfile"),
        ("kubernetes", "pipelines", "--image", IMAGE, "--set-env", BOOTSTRAP, "-o", "/proc/kpipe-no-such"),
    ],
)
def test_an_unwritable_output_is_a_usage_error(args: tuple[str, ...]) -> None:
    err = one_line_error(*kpipe("export", *args))
    assert "cannot write" in err


def test_an_output_directory_below_a_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory\n")
    target = tmp_path / "file" / "deploy"
    args = ("--image", IMAGE, "--set-env", BOOTSTRAP, "-o", str(target))
    err = one_line_error(*kpipe("export", "kubernetes", "pipelines", *args))
    assert f"cannot write {target}: Not a directory" in err


# -- 4. nothing outside the project root ------------------------------------------------------------------------


def test_asyncapi_reads_no_schema_outside_the_project_root(tmp_path: Path) -> None:
    (tmp_path / "outside.yaml").write_text("type: object\ndescription: OUTSIDE-SENTINEL\n")
    project_dir = tmp_path / "project"
    project_dir.mkdir()
    (project_dir / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (project_dir / "p.yaml").write_text(
        "cluster: {bootstrap_servers: k:9092}\nschemas:\n  S: ../outside.yaml\n"
        "topics:\n  t: {partitions: 1, schema: S}\n"
    )
    code, out, err = kpipe("export", "asyncapi", str(project_dir / "p.yaml"))
    assert code != 0 and out == ""
    assert "outside the project root" in err and "OUTSIDE-SENTINEL" not in err


# -- 5. the Dockerfile copies the handlers' code ------------------------------------------------------------------


def test_the_dockerfile_copies_handler_and_model_code(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'shop'\n")
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "handlers.py").write_text("def handle(event, ctx):\n    pass\n")
    (tmp_path / "models.py").write_text(
        "from pydantic import BaseModel\n\n\nclass Order(BaseModel):\n    id: str\n"
    )
    (tmp_path / "pipelines" / "p.yaml").write_text(
        "cluster: {bootstrap_servers: k:9092}\nschemas:\n  Order: {model: 'models:Order'}\n"
        "topics:\n  t: {partitions: 1}\n"
        "consumers:\n  g: {topics: [t], handler: 'app.handlers:handle'}\n"
        "  h: {topics: [t], handler: 'elsewhere.mod:handle'}\n"
    )
    code, out, err = kpipe("export", "dockerfile", str(tmp_path / "pipelines"), "--kpipe", "vendor/kpipe.whl")
    assert code == 0, err
    lines = out.splitlines()
    assert 'COPY --chown=root:root ["app/", "/app/app/"]' in lines
    assert 'COPY --chown=root:root ["models.py", "/app/models.py"]' in lines
    assert 'COPY --chown=root:root ["pipelines/", "/app/pipelines/"]' in lines
    assert "warning: no code below the project root for elsewhere.mod:handle" in err and "--copy" in err


# -- 6. -o replaces an earlier export and nothing else ----------------------------------------------------------


def test_an_output_directory_holds_only_the_latest_export(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    args = ("export", "kubernetes", "pipelines", "--image", IMAGE, "--set-env", BOOTSTRAP, "-o", str(deploy))
    assert kpipe(*args, "--keda")[0] == 0
    with_keda = {p.name for p in deploy.iterdir()}
    code, _, err = kpipe(*args)
    assert code == 0 and "replacing" in err, err
    without = {p.name for p in deploy.iterdir()}
    assert any("scaledobject" in name for name in with_keda)
    assert not any("scaledobject" in name for name in without)  # no stale ScaledObject left to apply
    (deploy / "notes.txt").write_text("mine\n")
    err = one_line_error(*kpipe(*args))
    assert "holds files kpipe did not write (notes.txt)" in err
    assert (deploy / "notes.txt").read_text() == "mine\n" and {
        p.name for p in deploy.iterdir()
    } == without | {"notes.txt"}


# -- 7. the apply Job survives a redeploy -------------------------------------------------------------------------


def _job(*extra: str) -> dict[str, Any]:
    code, out, err = kpipe("export", "kubernetes", "pipelines", "--set-env", BOOTSTRAP, *extra)
    assert code == 0, err
    [job] = [o for o in objects(out) if o["kind"] == "Job"]
    return job


def test_a_new_image_gets_a_new_job() -> None:
    # A Job's pod template is immutable: the same name with a new image would fail `kubectl apply`.
    first, again = _job("--image", IMAGE), _job("--image", IMAGE)
    second = _job("--image", "registry.example/orders:1.5.0")
    assert first["metadata"]["name"] == again["metadata"]["name"] != second["metadata"]["name"]
    assert _job("--image", IMAGE, "--job-suffix", "v2")["metadata"]["name"] == "kpipe-apply-v2"
    hook = _job("--image", IMAGE, "--hook", "helm")  # a hook deletes the old Job before creating this one
    assert hook["metadata"]["name"] == "kpipe-apply"
    assert first["spec"]["backoffLimit"] == hook["spec"]["backoffLimit"] == 0


def test_the_docs_say_the_job_is_immutable_and_not_retried() -> None:
    docs = " ".join((ROOT / "docs" / "production.md").read_text().split())
    assert "immutable" in docs and "--job-suffix" in docs and "backoffLimit: 0" in docs
    assert "backoffLimit: 3" not in docs


# -- 8. --image ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("image", ["", "  ", "registry/x:1 --privileged", "registry/x:1\nkind: Secret"])
def test_an_image_that_is_no_reference_is_a_usage_error(image: str) -> None:
    code, out, err = kpipe("export", "kubernetes", "pipelines", "--image", image, "--set-env", BOOTSTRAP)
    assert (code, out) == (2, "") and "--image" in err and "Traceback" not in err


# -- 9. AsyncAPI without YAML aliases -------------------------------------------------------------------------------


def test_the_asyncapi_yaml_has_no_aliases() -> None:
    code, out, err = kpipe("export", "asyncapi", "pipelines")
    assert code == 0, err
    assert "&id0" not in out and "*id0" not in out
    document = yaml.safe_load(out)
    receive = [o for o in document["operations"].values() if o["action"] == "receive"]
    assert len({o["bindings"]["kafka"]["groupId"]["enum"][0] for o in receive}) >= 2


# -- 10. the pods' arguments are ones `kpipe run` takes --------------------------------------------------------------


def test_every_container_runs_a_command_line_kpipe_accepts() -> None:
    import click

    from kpipe.cli import cli

    code, out, err = kpipe(
        "export", "kubernetes", "pipelines", "--image", IMAGE, "--set-env", BOOTSTRAP, "--var", "x=y",
        "--values", "pipelines/values/prod.yaml", "--shutdown-timeout", "12.5",
    )  # fmt: skip
    assert code == 0, err
    checked = 0
    for obj in objects(out):
        if obj["kind"] not in ("Deployment", "Job"):
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            name, *args = container["args"]
            command = cli.get_command(click.Context(cli), name)
            assert command is not None
            # Parsing fails on an option `kpipe run`/`kpipe apply` does not have, or a bad value.
            with command.make_context(name, list(args), resilient_parsing=False) as ctx:
                assert isinstance(ctx, click.Context)
                if name == "run":
                    assert ctx.params["groups"] and ctx.params["shutdown_timeout"] == 12.5
            checked += 1
    assert checked == 4  # the Job and three groups
    with pytest.raises(click.UsageError):
        run = cli.get_command(click.Context(cli), "run")
        assert run is not None
        run.make_context("run", ["pipelines", "--no-such-flag"])


# -- 12. one static member id is not shared by pods ------------------------------------------------------------


def test_an_autoscaled_group_with_a_static_member_id_is_refused(tmp_path: Path) -> None:
    project = _project(tmp_path, "    sasl.username: \"{{ env('KAFKA_USER') }}\"\n")
    project.write_text(
        project.read_text().replace(
            "g: {topics: [t], handler: m:f}",
            "g: {topics: [t], handler: m:f, config: {group.instance.id: fixed}}",
        )
    )
    code, out, err = kpipe("export", "kubernetes", str(project), "--image", IMAGE)
    assert code == 0, err  # one pod: a static member replaced in place by a rolling deploy
    err = one_line_error(*kpipe("export", "kubernetes", str(project), "--image", IMAGE, "--keda"))
    assert "consumer group 'g' sets group.instance.id" in err and "up to 2 pods" in err
