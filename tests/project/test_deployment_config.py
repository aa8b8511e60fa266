"""cluster.yaml and serve_config.yaml load with Ray's own validators (no network)."""

import copy
import os
from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.serve.schema import ServeDeploySchema

ROOT = Path(__file__).resolve().parents[2]


def test_cluster_yaml_passes_rays_validator():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    types = prepared["available_node_types"]
    assert types["sandbox"]["resources"]["sandbox"] > 0
    coordinator_nodes = {name for name, kind in types.items() if kind["resources"].get("coordinator", 0) > 0}
    assert coordinator_nodes == {"head", "worker"}  # coordinators never land beside user code
    assert prepared["head_node_type"] == "head"
    assert any("serve deploy serve_config.yaml" in c for c in prepared["head_start_ray_commands"])
    assert any("requirements.txt" in c for c in prepared["setup_commands"])


def test_serve_config_passes_serves_schema():
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    schema = (
        ServeDeploySchema.model_validate(config)
        if hasattr(ServeDeploySchema, "model_validate")
        else ServeDeploySchema.parse_obj(config)
    )
    app = schema.applications[0]
    assert app.import_path == "serve_app:app"
    assert app.runtime_env["env_vars"]["SANDBOX_RESOURCE"] == "sandbox"
    assert app.runtime_env["env_vars"]["COORDINATOR_RESOURCE"] == "coordinator"
    deployment = app.deployments[0]
    assert deployment.name == "FlowExecutor"


def test_the_serve_config_keeps_the_ingress_options_of_the_code():
    """A deployment's `ray_actor_options` in a Serve config replaces the code's whole (Serve merges
    only the app's and the deployment's `runtime_env` env vars): the ingress's own environment
    (`serve_app.INGRESS_ENV`) must be repeated there, or `serve deploy` would drop it."""
    import serve_app

    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    options = config["applications"][0]["deployments"][0]["ray_actor_options"]
    coded = serve_app.FlowExecutorIngress.ray_actor_options
    assert options["runtime_env"]["env_vars"] == coded["runtime_env"]["env_vars"] == serve_app.INGRESS_ENV
    assert options["num_cpus"] == coded["num_cpus"] == 0


def test_every_nodes_ray_start_runs_serves_haproxy_mode():
    """Serve reads RAY_SERVE_ENABLE_HA_PROXY when its controller, proxies and replicas start: it is in
    the environment of every node's `ray start` (head and workers), not in the app's runtime_env,
    where it would reach only the replicas (each opening a port that nothing uses). So is
    `serve_app.RAY_ENV`, read when Serve's controller starts."""
    import serve_app

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    starts = [
        command
        for key in ("head_start_ray_commands", "worker_start_ray_commands")
        for command in config[key]
        if "ray start" in command
    ]
    assert len(starts) == 2
    for command in starts:
        assert "RAY_SERVE_ENABLE_HA_PROXY=1" in command.split("ray start")[0].split()
        assert {f"{name}={value}" for name, value in serve_app.RAY_ENV.items()} <= set(
            command.split("ray start")[0].split()
        )
    app = yaml.safe_load((ROOT / "serve_config.yaml").read_text())["applications"][0]
    assert not [name for name in app["runtime_env"]["env_vars"] if name.startswith("RAY_SERVE_")]


def test_the_dockerfile_starts_serve_run_with_options_it_has():
    import json

    from ray.serve.scripts import cli

    entrypoint = next(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("ENTRYPOINT"))
    command = json.loads(entrypoint.removeprefix("ENTRYPOINT"))
    assert command[:2] == ["serve", "run"] and command[-1] == "serve_app:app"
    known = {opt for param in cli.commands["run"].params for opt in param.opts}
    assert [arg for arg in command[2:-1] if arg.startswith("-") and arg not in known] == []
    assert "ENV RAY_SERVE_DEFAULT_HTTP_HOST=0.0.0.0" in (ROOT / "Dockerfile").read_text()  # reachable from outside


def test_serve_run_gives_ray_the_service_s_ray_environment_unless_the_operator_set_it(monkeypatch):
    """`serve run serve_app:app` imports the module before it starts Ray: what it puts in the
    environment then reaches Serve's controller; a value the operator set is kept."""
    import serve_app

    name, value = next(iter(serve_app.RAY_ENV.items()))
    monkeypatch.delenv(name, raising=False)
    serve_app.default_ray_env()
    assert os.environ[name] == value
    monkeypatch.setenv(name, "0.2")
    serve_app.default_ray_env()
    assert os.environ[name] == "0.2"
