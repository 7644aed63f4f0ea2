"""The nginx front of deploy/k8s: deploy/nginx's model affinity, over the cluster's dmr pods.

The pods' configuration is the ConfigMap dmr-nginx, written here into a folder as Kubernetes mounts it.
crossplane (nginx's own configuration parser) compares it with deploy/nginx/dmr-cluster.conf, and
Debian's real nginx checks it (``nginx -t``, njs loading the script). Debian 12's nginx is 1.22, older
than the cluster's 1.28: it lacks upstream servers' ``resolve`` (1.27.3), and no cluster DNS answers
here, so for ``nginx -t`` alone the servers become loopback addresses without ``resolve`` and the
resolver 127.0.0.1, and its temporary paths move out of /tmp; nothing else is changed. No request goes
through it here: tests/scaleout sends traffic through deploy/nginx's own file.
"""

import re
import shutil
import subprocess

import crossplane
import pytest

from tests.k8s import kustomize
from tests.k8s.rendered import K8S, OVERLAYS, dmr_statefulsets, find

DEPLOY_NGINX = K8S.parent / "nginx"
MOUNT = "/etc/nginx/dmr/"


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def rendered(request):
    return kustomize.build(OVERLAYS[request.param], load_restrictor_none=True)


@pytest.fixture()
def mounted(rendered, tmp_path):
    """The ConfigMap dmr-nginx as the pod sees it: one file per key."""
    (config_map,) = find(rendered, "ConfigMap", "dmr-nginx")
    folder = tmp_path / "dmr"
    folder.mkdir()
    for key, text in config_map["data"].items():
        (folder / key).write_text(text)
    return folder


def parsed(path) -> list[dict]:
    """crossplane's directives of one file (its includes not followed), comments dropped."""
    payload = crossplane.parse(str(path), single=True, check_ctx=False, catch_errors=False)
    assert payload["status"] == "ok", payload["errors"]
    return _without_lines(payload["config"][0]["parsed"])


def _without_lines(directives: list[dict]) -> list[dict]:
    return [{key: _without_lines(value) if key == "block" else value for key, value in d.items() if key != "line"}
            for d in directives]  # fmt: skip


def block(directives: list[dict], name: str, *args: str) -> list[dict]:
    (found,) = [d for d in directives if d["directive"] == name and d["args"][: len(args)] == list(args)]
    return found["block"]


def named(directives: list[dict], *names: str) -> list[dict]:
    return [d for d in directives if d["directive"] in names]


def test_the_config_map_holds_deploy_nginxs_script_as_it_is(mounted):
    assert (mounted / "dmr_affinity.js").read_text() == (DEPLOY_NGINX / "dmr_affinity.js").read_text()


def test_the_cluster_site_is_deploy_nginxs_but_for_what_a_cluster_changes(mounted):
    ours, theirs = parsed(mounted / "dmr-cluster.conf"), parsed(DEPLOY_NGINX / "dmr-cluster.conf")
    top_level = ("js_import", "js_set", "log_format")
    assert named(ours, *top_level) == named(theirs, *top_level)
    kept = ("hash", "keepalive", "keepalive_timeout")
    assert named(block(ours, "upstream", "dmr_hosts"), *kept) == named(block(theirs, "upstream", "dmr_hosts"), *kept)
    ours_server, theirs_server = block(ours, "server"), block(theirs, "server")
    assert block(ours_server, "location", "/") == block(theirs_server, "location", "/")
    limits = ("client_max_body_size", "client_body_buffer_size")
    assert named(ours_server, *limits) == named(theirs_server, *limits)


def test_each_pod_is_checked_as_deploy_nginx_checks_a_host(mounted):
    """The same passive health check (max_fails, fail_timeout), plus `resolve`."""
    upstream = block(parsed(DEPLOY_NGINX / "dmr-cluster.conf"), "upstream", "dmr_hosts")
    (parameters,) = {tuple(server["args"][1:]) for server in named(upstream, "server")}
    for server in parsed(mounted / "upstreams.conf"):
        assert server["directive"] == "server" and server["args"][1:] == ["resolve", *parameters]


def test_the_upstream_is_every_dmr_pod_by_its_dns_name(rendered, mounted):
    services = {s["metadata"]["name"]: s for s in find(rendered, "Service")}
    expected = set()
    for statefulset in dmr_statefulsets(rendered):
        service = services[statefulset["spec"]["serviceName"]]
        (port,) = service["spec"]["ports"]
        domain = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
        expected |= {f"{statefulset['metadata']['name']}-{i}.{domain}:{port['port']}"
                     for i in range(statefulset["spec"]["replicas"])}  # fmt: skip
    assert {server["args"][0] for server in parsed(mounted / "upstreams.conf")} == expected


def test_the_pod_runs_the_mounted_config_and_every_file_it_names_is_mounted(rendered, mounted):
    (deployment,) = find(rendered, "Deployment", "dmr-nginx")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (volume,) = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") == "dmr-nginx"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"].rstrip("/") + "/" == MOUNT
    assert container["command"] == ["nginx", "-c", MOUNT + "nginx.conf"]
    text = "\n".join(p.read_text() for p in mounted.iterdir() if p.suffix == ".conf")
    for path in re.findall(rf"{MOUNT}[\w./-]*", text):
        assert path == MOUNT or (mounted / path.removeprefix(MOUNT)).is_file(), path
    assert (mounted / "dmr_affinity.js").is_file()


def test_the_services_and_probes_meet_what_nginx_listens_on(rendered, mounted):
    (deployment,) = find(rendered, "Deployment", "dmr-nginx")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    server = block(parsed(mounted / "dmr-cluster.conf"), "server")
    assert named(server, "listen") == [{"directive": "listen", "args": [str(container["ports"][0]["containerPort"])]}]
    assert block(server, "location", "=", "/nginx-health")
    assert container["readinessProbe"]["httpGet"]["path"] == "/nginx-health"


def test_real_nginx_accepts_the_config_and_loads_the_script(mounted, tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    main = _for_debian_nginx(mounted, tmp_path)
    # No -p: the module's relative path (modules/...) resolves under Debian's prefix, as in the image.
    result = subprocess.run([nginx, "-t", "-e", "stderr", "-c", str(main)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0 and "test is successful" in result.stderr, result.stderr


def _for_debian_nginx(mounted, tmp_path):
    """Only the changes the module docstring lists, each insisting on its matches."""
    (tmp_path / "run").mkdir()
    for path in mounted.iterdir():
        text = path.read_text()
        if path.name == "nginx.conf":
            text = _replace(text, r" /tmp/", f" {tmp_path}/run/", 6)
            text = _replace(text, r"resolver \S+ ", "resolver 127.0.0.1 ", 1)
        if path.name == "upstreams.conf":
            servers = len(re.findall(r"^server ", text, flags=re.MULTILINE))
            text = _replace(text, r"^server \S+:(\d+) resolve ", r"server 127.0.0.1:\1 ", servers)
        path.write_text(text.replace(MOUNT, f"{mounted}/"))
    return mounted / "nginx.conf"


def _replace(text: str, pattern: str, replacement: str, count: int) -> str:
    result, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert found == count, f"expected {count} match(es) of {pattern!r}, found {found}"
    return result
