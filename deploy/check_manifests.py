"""Cross-checks deploy/kubernetes/ beyond what a schema can see.

kubernetes-validate proves each object is well formed; this proves the objects fit together and
fit the bridge: kustomization.yaml lists every manifest, selectors match the pod, the files the
bridge's flags name are mounted from the Secrets that exist, the probes hit the ports the flags
bind, the grace period covers the bridge's drain, and the Dockerfile agrees on ports, user and
data directory. With BRIDGE_BIN set, every flag in the manifests must appear in
`$BRIDGE_BIN serve --help`, so a renamed flag fails here rather than in a cluster.

Usage: python check_manifests.py DEPLOY_DIR DOCKERFILE
"""

import ipaddress
import os
import re
import subprocess
import sys

import yaml

BRIDGE = "clerk-bridge"
EXAMPLE_SUFFIX = ".example.yaml"
HEALTH_SERVICE = "clerk.bridge.v1.EventStream"
# Time the app container gets before the bridge's own drain, in seconds.
APP_SHUTDOWN_ALLOWANCE = 10

problems = []


def check(condition, message):
    if not condition:
        problems.append(message)
    return condition


def load(path):
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def flag_values(args):
    """`--name=value` and `--name value` pairs of a container's args, by name."""
    flags, i = {}, 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            if "=" in arg:
                name, value = arg[2:].split("=", 1)
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                name, value = arg[2:], args[i + 1]
                i += 1
            else:
                name, value = arg[2:], ""
            flags[name] = value
        i += 1
    return flags


def seconds(duration):
    match = re.fullmatch(r"(\d+)(ms|s|m)?", duration)
    if not match:
        return None
    number, unit = int(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60}[unit]


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def is_loopback(addr):
    host = addr.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_kustomization(deploy_dir):
    kustomization = load(os.path.join(deploy_dir, "kustomization.yaml"))[0]
    listed = kustomization.get("resources", [])
    for name in listed:
        check(os.path.isfile(os.path.join(deploy_dir, name)), f"kustomization.yaml lists missing {name}")
    for name in sorted(os.listdir(deploy_dir)):
        if name.endswith(".yaml") and name != "kustomization.yaml" and not name.endswith(EXAMPLE_SUFFIX):
            check(name in listed, f"{name} is not listed in kustomization.yaml resources")
    return listed, {image["name"] for image in kustomization.get("images", [])}


def mounted_file(pod, container, path, secrets):
    """Checks that `path` is a key of an existing Secret mounted whole into `container`."""
    directory, filename = os.path.split(path)
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    if not check(directory in mounts, f"{path}: {directory} is not a volume mount of {container['name']}"):
        return
    check(not mounts[directory].get("subPath"), f"{path}: a subPath mount never sees Secret updates")
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[directory]["name"])
    sources = [s["secret"] for s in volume.get("projected", {}).get("sources", []) if "secret" in s]
    if "secret" in volume:
        sources.append({**volume["secret"], "name": volume["secret"]["secretName"]})
    for source in sources:
        for item in source.get("items", []):
            if item["path"] == filename:
                check(item["key"] in secrets.get(source["name"], set()),
                      f"{path}: Secret {source['name']} (secret.example.yaml) has no key {item['key']}")
                return
    check(False, f"{path}: no Secret item is mounted as {filename}")


def check_bridge(pod, bridge, flags, secrets, dockerfile):
    check(bridge.get("restartPolicy") == "Always", "the bridge must be a native sidecar (restartPolicy: Always)")
    http_port = port_of(flags.get("http-addr", "0.0.0.0:8080"))
    grpc_addr = flags.get("grpc-addr", "127.0.0.1:50051")
    ports = {p["containerPort"] for p in bridge.get("ports", [])}
    check(http_port in ports, f"the bridge declares no containerPort {http_port} (--http-addr)")
    if "metrics-addr" in flags:
        metrics_port = port_of(flags["metrics-addr"])
        check(metrics_port in ports, f"the bridge declares no containerPort {metrics_port} (--metrics-addr)")

    startup = bridge.get("startupProbe", {}).get("httpGet", {})
    check(startup.get("path") == "/readyz", "the startup probe must GET /readyz")
    check(startup.get("port") in (http_port, "http"), "the startup probe must use the webhook port")
    for kind in ("readinessProbe", "livenessProbe"):
        grpc = bridge.get(kind, {}).get("grpc")
        if check(grpc, f"the {kind} must be a gRPC health probe"):
            check(grpc["port"] == port_of(grpc_addr), f"the {kind} port is not the --grpc-addr port")
    readiness = bridge.get("readinessProbe", {}).get("grpc", {})
    check(readiness.get("service") == HEALTH_SERVICE, f"the readiness probe must ask for {HEALTH_SERVICE}")
    if bridge.get("readinessProbe", {}).get("grpc"):
        check(not is_loopback(grpc_addr), "gRPC probes reach the pod IP: --grpc-addr must not be loopback")
    if not is_loopback(grpc_addr):
        check("grpc-token-file" in flags, "gRPC off loopback needs --grpc-token-file")

    for flag in ("signing-secret-file", "grpc-token-file"):
        if check(flag in flags, f"the bridge needs --{flag}"):
            mounted_file(pod, bridge, flags[flag], secrets)
    mounts = {m["mountPath"]: m["name"] for m in bridge.get("volumeMounts", [])}
    data_dir = flags.get("data-dir")
    check(data_dir in mounts, f"--data-dir {data_dir} is not a volume mount")

    grace = seconds(flags.get("shutdown-grace", "8s"))
    period = pod.get("terminationGracePeriodSeconds", 30)
    # The bridge drains its servers within the grace, then closes the log within the grace again.
    check(grace is not None and period >= 2 * grace + APP_SHUTDOWN_ALLOWANCE,
          f"terminationGracePeriodSeconds {period} < 2 x --shutdown-grace + {APP_SHUTDOWN_ALLOWANCE}s for the app")

    sc = bridge.get("securityContext", {})
    check(sc.get("allowPrivilegeEscalation") is False, "the bridge must set allowPrivilegeEscalation: false")
    check(sc.get("readOnlyRootFilesystem") is True, "the bridge must set readOnlyRootFilesystem: true")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "the bridge must drop ALL capabilities")
    pod_sc = pod.get("securityContext", {})
    check(pod_sc.get("runAsNonRoot") or sc.get("runAsNonRoot"), "runAsNonRoot must be set")
    check((sc.get("seccompProfile") or pod_sc.get("seccompProfile", {})).get("type") == "RuntimeDefault",
          "seccompProfile must be RuntimeDefault")

    expose = {int(p) for line in dockerfile if line.startswith("EXPOSE ") for p in line.split()[1:]}
    check({http_port, port_of(grpc_addr)} <= expose, "the Dockerfile must EXPOSE the webhook and gRPC ports")
    check(any(line.startswith("VOLUME") and data_dir in line for line in dockerfile),
          f"the Dockerfile's VOLUME is not --data-dir {data_dir}")
    user = next((line.split()[1] for line in dockerfile if line.startswith("USER ")), "")
    uid = pod_sc.get("runAsUser", sc.get("runAsUser"))
    check(user.split(":")[0] == str(uid), f"the Dockerfile's USER {user} is not runAsUser {uid}")
    return http_port


def check_flags_exist(flags):
    binary = os.environ.get("BRIDGE_BIN")
    if not binary:
        print("BRIDGE_BIN not set: not checking the manifests' flags against `clerk-bridge serve --help`")
        return
    help_text = subprocess.run([binary, "serve", "--help"], check=True, capture_output=True, text=True).stdout
    for flag in flags:
        check(re.search(rf"--{re.escape(flag)}\b", help_text), f"--{flag} is not a flag of `{binary} serve`")


def main(deploy_dir, dockerfile_path):
    listed, mapped_images = check_kustomization(deploy_dir)
    objects = [o for name in listed for o in load(os.path.join(deploy_dir, name))]
    examples = [n for n in os.listdir(deploy_dir) if n.endswith(EXAMPLE_SUFFIX)]
    objects_and_examples = objects + [o for n in examples for o in load(os.path.join(deploy_dir, n))]
    secrets = {o["metadata"]["name"]: set(o.get("stringData", {})) | set(o.get("data", {}))
               for o in objects_and_examples if o["kind"] == "Secret"}
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], []).append(o)
    with open(dockerfile_path) as f:
        dockerfile = [line.strip() for line in f]

    deployment = by_kind["Deployment"][0]
    pod, labels = deployment["spec"]["template"]["spec"], deployment["spec"]["template"]["metadata"]["labels"]
    check(selects(deployment["spec"]["selector"]["matchLabels"], labels), "the Deployment's selector misses its pod")
    for container in pod.get("initContainers", []) + pod["containers"]:
        check(container["image"] in mapped_images, f"image {container['image']} is not set in kustomization.yaml images")

    claims = {o["metadata"]["name"]: o for o in by_kind.get("PersistentVolumeClaim", [])}
    for volume in pod.get("volumes", []):
        claim = volume.get("persistentVolumeClaim", {}).get("claimName")
        if claim and check(claim in claims, f"volume {volume['name']}: no PersistentVolumeClaim {claim}"):
            if {"ReadWriteOnce", "ReadWriteOncePod"} & set(claims[claim]["spec"]["accessModes"]):
                check(deployment["spec"].get("replicas") == 1, "a ReadWriteOnce log allows one replica")
                check(deployment["spec"].get("strategy", {}).get("type") == "Recreate",
                      "a ReadWriteOnce log needs strategy Recreate: two pods must not open one log")

    bridges = [c for c in pod.get("initContainers", []) if c["name"] == BRIDGE]
    if not check(bridges, f"no init container named {BRIDGE}"):
        return
    flags = flag_values(bridges[0].get("args", []))
    check(bridges[0].get("args", [None])[0] == "serve", "the bridge's args must start with serve")
    http_port = check_bridge(pod, bridges[0], flags, secrets, dockerfile)
    for app in pod["containers"]:
        # The app authenticates with the bridge's own token, mounted at the same path.
        if "grpc-token-file" in flags:
            mounted_file(pod, app, flags["grpc-token-file"], secrets)
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    metrics_port = port_of(flags["metrics-addr"]) if "metrics-addr" in flags else http_port
    check(annotations.get("prometheus.io/port") == str(metrics_port),
          "prometheus.io/port is not the port serving /metrics (--metrics-addr, else the webhook port)")

    for service in by_kind.get("Service", []):
        check(selects(service["spec"]["selector"], labels), f"Service {service['metadata']['name']} misses the pod")
        for port in service["spec"]["ports"]:
            # Named ports of native sidecars did not resolve for Services before Kubernetes 1.32.
            check(port["targetPort"] == http_port, f"Service port {port['name']} must target {http_port} by number")
    for policy in by_kind.get("NetworkPolicy", []):
        check(selects(policy["spec"]["podSelector"]["matchLabels"], labels), "the NetworkPolicy misses the pod")
        allowed = {p.get("port") for rule in policy["spec"].get("ingress", []) for p in rule.get("ports", [])}
        check(http_port in allowed, "the NetworkPolicy must let webhooks in")
        check(metrics_port in allowed, "the NetworkPolicy must let Prometheus reach /metrics")
    check_flags_exist(flags)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    for problem in problems:
        print(f"FAIL {problem}")
    if problems:
        sys.exit(1)
    print("manifests, flags and Dockerfile agree")
