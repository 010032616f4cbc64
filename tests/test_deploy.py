"""The Kubernetes and KServe files in deploy/ fit the API image: its port, routes and settings."""
import os
import re

import yaml

from helpers import ROOT


def documents(name):
    with open(os.path.join(ROOT, "deploy", name)) as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def image_port():
    with open(os.path.join(ROOT, "Dockerfile_api")) as handle:
        return int(re.search(r"^EXPOSE (\d+)", handle.read(), re.M).group(1))


def routes():
    from bert_in_a_flask.serving.app import create_app
    from bert_in_a_flask.serving import settings
    from helpers import FakePredictor
    app = create_app(settings.from_env({}), predictor=FakePredictor())
    return {rule.rule.replace("<model_name:name>", "bert") for rule in app.url_map.iter_rules()}


def check_container(container, known_routes):
    from bert_in_a_flask.serving.settings import DEFAULTS
    ports = {port.get("name"): port["containerPort"] for port in container["ports"]}
    assert image_port() in ports.values()
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if probe in container:
            get = container[probe]["httpGet"]
            assert get["path"] in known_routes, (probe, get["path"])
            assert ports.get(get["port"], get["port"]) == image_port()
    for variable in container.get("env", []):
        assert variable["name"] in DEFAULTS, variable["name"]
        assert isinstance(variable["value"], str)
    assert container["image"].startswith("bert-in-a-flask-api")


def test_the_deployment_probes_the_services_own_routes_on_the_images_port():
    deployment, service = documents("kubernetes.yaml")
    assert deployment["kind"] == "Deployment" and service["kind"] == "Service"
    known = routes()
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
    for container in pod["containers"]:
        check_container(container, known)
        assert container["livenessProbe"]["httpGet"]["path"] == "/health_check"
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


def test_the_inference_service_speaks_v2_on_the_images_port():
    (service,) = documents("kserve.yaml")
    assert service["kind"] == "InferenceService"
    known = routes()
    assert "/v2/models/bert/infer" in known
    for container in service["spec"]["predictor"]["containers"]:
        check_container(container, known)
        assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
