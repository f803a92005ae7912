"""Cross-checks deploy/kubernetes/ beyond what a schema can see.

kubernetes-validate proves each object is well formed; this proves the objects fit together and
fit the bridge: kustomization.yaml lists every manifest, selectors match the pod, the files the
bridge's flags name are mounted from the Secrets that exist, the probes hit the ports the flags
bind, the grace period covers the bridge's drain, and the Dockerfile agrees on ports, user and
data directory. With BRIDGE_BIN set, every flag in the manifests must appear in
`$BRIDGE_BIN serve --help`, and every environment variable the bridge container sets must be one
it lists, so a renamed flag fails here rather than in a cluster.

With JETSTREAM_DIR, also the scaled-out shape (the log in a NATS JetStream stream): the same
checks, plus those of check_jetstream: no PersistentVolumeClaim, a rolling update that never
drops below the replica count, readiness on /readyz, a PodDisruptionBudget that selects the pods
and leaves some running, pods spread over nodes, the NATS settings from an existing ConfigMap,
the Helm values of the NATS cluster agreeing with them (port, replicas, store size) and a
NetworkPolicy letting the bridges reach NATS. The bridge's security context, resources and
liveness probe must be the embedded shape's.

Usage: python check_manifests.py DEPLOY_DIR DOCKERFILE [JETSTREAM_DIR]
"""

import ipaddress
import os
import re
import subprocess
import sys
from urllib.parse import urlsplit

import yaml

BRIDGE = "clerk-bridge"
EXAMPLE_SUFFIX = ".example.yaml"
# Helm values files (for charts the manifests rely on): not Kubernetes objects, not in kustomize.
HELM_VALUES_SUFFIX = "-values.yaml"
NATS_VALUES = "nats-values.yaml"
HEALTH_SERVICE = "clerk.bridge.v1.EventStream"
# Time the app container gets before the bridge's own drain, in seconds.
APP_SHUTDOWN_ALLOWANCE = 10
# The bridge's own environment variables are CLERK_BRIDGE_ and the flag's name in capitals.
ENV_PREFIX = "CLERK_BRIDGE_"
# Replica counts a JetStream stream may have.
STREAM_REPLICAS = {1, 3, 5}
# NATS's default max_payload, and the least the stream's messages need: an encoded event of up to
# 4 MiB (src/clerk/bound.rs, MAX_MESSAGE_BYTES) and its headers.
NATS_DEFAULT_MAX_PAYLOAD = 1024 * 1024
EVENT_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024
# Settings of the bridge container the scaled-out shape must share with the embedded one.
SHARED_BRIDGE_SETTINGS = ("securityContext", "resources", "livenessProbe")

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


def size_bytes(size):
    """Bytes of a size as Kubernetes (`10Gi`) or the bridge (`8GiB`, `512MB`) writes it."""
    match = re.fullmatch(r"(\d+)\s*([KMGT]?)(i?)B?", str(size))
    if not match:
        return None
    number, prefix, binary = int(match.group(1)), match.group(2), match.group(3)
    base = 1024 if binary else 1000
    return number * base ** " KMGT".index(prefix or " ")


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
        if (name.endswith(".yaml") and name != "kustomization.yaml" and not name.endswith(EXAMPLE_SUFFIX)
                and not name.endswith(HELM_VALUES_SUFFIX)):
            check(name in listed, f"{deploy_dir}/{name} is not listed in kustomization.yaml resources")
    return listed, {image["name"] for image in kustomization.get("images", [])}


class Shape:
    """One directory's manifests: its objects by kind, its images and the Secrets it may mount."""

    def __init__(self, deploy_dir, secret_dirs):
        self.dir = deploy_dir
        listed, self.mapped_images = check_kustomization(deploy_dir)
        objects = [o for name in listed for o in load(os.path.join(deploy_dir, name))]
        examples = [os.path.join(d, n) for d in secret_dirs for n in os.listdir(d) if n.endswith(EXAMPLE_SUFFIX)]
        objects_and_examples = objects + [o for path in examples for o in load(path)]
        self.secrets = {o["metadata"]["name"]: set(o.get("stringData", {})) | set(o.get("data", {}))
                        for o in objects_and_examples if o["kind"] == "Secret"}
        self.by_kind = {}
        for o in objects:
            self.by_kind.setdefault(o["kind"], []).append(o)
        self.deployment = self.by_kind["Deployment"][0]
        self.pod = self.deployment["spec"]["template"]["spec"]
        self.labels = self.deployment["spec"]["template"]["metadata"]["labels"]


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


def env_settings(bridge, shape):
    """The bridge's environment variables by name, each with its value (a ConfigMap's, resolved)."""
    config_maps = {o["metadata"]["name"]: o.get("data", {}) for o in shape.by_kind.get("ConfigMap", [])}
    values = {}
    for var in bridge.get("env", []):
        if "value" in var:
            values[var["name"]] = var["value"]
            continue
        ref = var.get("valueFrom", {}).get("configMapKeyRef")
        if check(ref, f"{var['name']}: the bridge's environment comes from a value or a ConfigMap key"):
            data = config_maps.get(ref["name"])
            if check(data is not None, f"{var['name']}: no ConfigMap {ref['name']} in {shape.dir}"):
                if check(ref["key"] in data, f"{var['name']}: ConfigMap {ref['name']} has no key {ref['key']}"):
                    values[var["name"]] = data[ref["key"]]
    return values


def flag_of_env(name, env_flags):
    """The flag an environment variable sets: by `serve --help` when known, else by the bridge's
    naming rule (CLERK_BRIDGE_NATS_URL is --nats-url); None when neither knows it."""
    if env_flags is not None:
        return env_flags.get(name)
    if name.startswith(ENV_PREFIX):
        return name[len(ENV_PREFIX):].lower().replace("_", "-")
    return None


def settings_of(bridge, shape, env_flags):
    """The bridge's settings by flag name: its args' flags and the flags its environment sets."""
    settings = {}
    for name, value in env_settings(bridge, shape).items():
        flag = flag_of_env(name, env_flags)
        if flag:
            settings[flag] = value
    flags = flag_values(bridge.get("args", []))
    for flag in flags:
        check(flag not in settings, f"--{flag} is set both as a flag and in the environment")
    return {**settings, **flags}, flags


def check_bridge(pod, bridge, settings, shape, dockerfile, jetstream):
    check(bridge.get("restartPolicy") == "Always", "the bridge must be a native sidecar (restartPolicy: Always)")
    http_port = port_of(settings.get("http-addr", "0.0.0.0:8080"))
    grpc_addr = settings.get("grpc-addr", "127.0.0.1:50051")
    ports = {p["containerPort"] for p in bridge.get("ports", [])}
    check(http_port in ports, f"the bridge declares no containerPort {http_port} (--http-addr)")
    if "metrics-addr" in settings:
        metrics_port = port_of(settings["metrics-addr"])
        check(metrics_port in ports, f"the bridge declares no containerPort {metrics_port} (--metrics-addr)")

    startup = bridge.get("startupProbe", {}).get("httpGet", {})
    check(startup.get("path") == "/readyz", "the startup probe must GET /readyz")
    check(startup.get("port") in (http_port, "http"), "the startup probe must use the webhook port")
    if jetstream:
        # /readyz follows the NATS connection; gRPC health does not.
        readiness = bridge.get("readinessProbe", {}).get("httpGet", {})
        check(readiness.get("path") == "/readyz", "on JetStream the readiness probe must GET /readyz")
        check(readiness.get("port") in (http_port, "http"), "the readiness probe must use the webhook port")
        grpc_probes = ("livenessProbe",)
    else:
        grpc_probes = ("readinessProbe", "livenessProbe")
        readiness = bridge.get("readinessProbe", {}).get("grpc", {})
        check(readiness.get("service") == HEALTH_SERVICE, f"the readiness probe must ask for {HEALTH_SERVICE}")
    for kind in grpc_probes:
        grpc = bridge.get(kind, {}).get("grpc")
        if check(grpc, f"the {kind} must be a gRPC health probe"):
            check(grpc["port"] == port_of(grpc_addr), f"the {kind} port is not the --grpc-addr port")
            check(not is_loopback(grpc_addr), "gRPC probes reach the pod IP: --grpc-addr must not be loopback")
    if not is_loopback(grpc_addr):
        check("grpc-token-file" in settings, "gRPC off loopback needs --grpc-token-file")

    for flag in ("signing-secret-file", "grpc-token-file"):
        if check(flag in settings, f"the bridge needs --{flag}"):
            mounted_file(pod, bridge, settings[flag], shape.secrets)
    data_dir = settings.get("data-dir")
    if not jetstream:
        mounts = {m["mountPath"]: m["name"] for m in bridge.get("volumeMounts", [])}
        check(data_dir in mounts, f"--data-dir {data_dir} is not a volume mount")

    grace = seconds(settings.get("shutdown-grace", "8s"))
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
    if not jetstream:
        check(any(line.startswith("VOLUME") and data_dir in line for line in dockerfile),
              f"the Dockerfile's VOLUME is not --data-dir {data_dir}")
    user = next((line.split()[1] for line in dockerfile if line.startswith("USER ")), "")
    uid = pod_sc.get("runAsUser", sc.get("runAsUser"))
    check(user.split(":")[0] == str(uid), f"the Dockerfile's USER {user} is not runAsUser {uid}")
    return http_port


def serve_help():
    """`$BRIDGE_BIN serve --help`, or None without BRIDGE_BIN."""
    binary = os.environ.get("BRIDGE_BIN")
    if not binary:
        return None
    return subprocess.run([binary, "serve", "--help"], check=True, capture_output=True, text=True).stdout


def help_env_vars(help_text):
    """The flag each environment variable of `serve --help` sets, by variable name."""
    flags, flag = {}, None
    for line in help_text.splitlines():
        option = re.match(r"\s+(?:-\w, )?--([\w-]+)", line)
        if option:
            flag = option.group(1)
        env = re.search(r"\[env: (\w+)", line)
        if env and flag:
            flags[env.group(1)] = flag
    return flags


def check_flags_exist(bridge, flags, help_text, env_flags):
    if help_text is None:
        return
    for flag in flags:
        check(re.search(rf"--{re.escape(flag)}\b", help_text), f"--{flag} is not a flag of `clerk-bridge serve`")
    for var in bridge.get("env", []):
        check(var["name"] in env_flags,
              f"{var['name']} is not an environment variable `clerk-bridge serve --help` lists")


def check_shape(shape, dockerfile, help_text, jetstream):
    """The checks both shapes share; the bridge container and its settings, for the shape's own."""
    deployment, pod, labels = shape.deployment, shape.pod, shape.labels
    check(selects(deployment["spec"]["selector"]["matchLabels"], labels), "the Deployment's selector misses its pod")
    for container in pod.get("initContainers", []) + pod["containers"]:
        check(container["image"] in shape.mapped_images,
              f"image {container['image']} is not set in {shape.dir}/kustomization.yaml images")

    bridges = [c for c in pod.get("initContainers", []) if c["name"] == BRIDGE]
    if not check(bridges, f"no init container named {BRIDGE}"):
        return None, None
    bridge = bridges[0]
    env_flags = help_env_vars(help_text) if help_text is not None else None
    settings, flags = settings_of(bridge, shape, env_flags)
    check(bridge.get("args", [None])[0] == "serve", "the bridge's args must start with serve")
    http_port = check_bridge(pod, bridge, settings, shape, dockerfile, jetstream)
    for app in pod["containers"]:
        # The app authenticates with the bridge's own token, mounted at the same path.
        if "grpc-token-file" in settings:
            mounted_file(pod, app, settings["grpc-token-file"], shape.secrets)
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    metrics_port = port_of(settings["metrics-addr"]) if "metrics-addr" in settings else http_port
    check(annotations.get("prometheus.io/port") == str(metrics_port),
          "prometheus.io/port is not the port serving /metrics (--metrics-addr, else the webhook port)")

    for service in shape.by_kind.get("Service", []):
        check(selects(service["spec"]["selector"], labels), f"Service {service['metadata']['name']} misses the pod")
        for port in service["spec"]["ports"]:
            # Named ports of native sidecars did not resolve for Services before Kubernetes 1.32.
            check(port["targetPort"] == http_port, f"Service port {port['name']} must target {http_port} by number")
    bridge_policies = [p for p in shape.by_kind.get("NetworkPolicy", [])
                       if selects(p["spec"]["podSelector"].get("matchLabels"), labels)]
    check(bridge_policies, f"no NetworkPolicy in {shape.dir} selects the pod")
    for policy in bridge_policies:
        allowed = {p.get("port") for rule in policy["spec"].get("ingress", []) for p in rule.get("ports", [])}
        check(http_port in allowed, "the NetworkPolicy must let webhooks in")
        check(metrics_port in allowed, "the NetworkPolicy must let Prometheus reach /metrics")
    check_flags_exist(bridge, flags, help_text, env_flags)
    return bridge, settings


def check_embedded(shape, dockerfile, help_text):
    claims = {o["metadata"]["name"]: o for o in shape.by_kind.get("PersistentVolumeClaim", [])}
    spec = shape.deployment["spec"]
    for volume in shape.pod.get("volumes", []):
        claim = volume.get("persistentVolumeClaim", {}).get("claimName")
        if claim and check(claim in claims, f"volume {volume['name']}: no PersistentVolumeClaim {claim}"):
            if {"ReadWriteOnce", "ReadWriteOncePod"} & set(claims[claim]["spec"]["accessModes"]):
                check(spec.get("replicas") == 1, "a ReadWriteOnce log allows one replica")
                check(spec.get("strategy", {}).get("type") == "Recreate",
                      "a ReadWriteOnce log needs strategy Recreate: two pods must not open one log")
    bridge, settings = check_shape(shape, dockerfile, help_text, jetstream=False)
    if settings is not None:
        check("nats-url" not in settings, "the embedded shape must not set --nats-url")
    return bridge


def check_jetstream(shape, embedded_bridge, dockerfile, help_text, nats_values):
    bridge, settings = check_shape(shape, dockerfile, help_text, jetstream=True)
    if bridge is None:
        return
    if not check("nats-url" in settings, f"the bridge in {shape.dir} sets no --nats-url (CLERK_BRIDGE_NATS_URL)"):
        return
    spec, pod = shape.deployment["spec"], shape.pod
    replicas = spec.get("replicas", 1)
    check_stateless(shape, settings)
    check(replicas >= 2, f"the scaled-out shape runs {replicas} replica(s): at least 2")
    rolling = spec.get("strategy", {})
    check(rolling.get("type") == "RollingUpdate", "the scaled-out shape needs strategy RollingUpdate")
    update = rolling.get("rollingUpdate", {})
    check(update.get("maxUnavailable") == 0 and update.get("maxSurge", 0) != 0,
          "the rolling update must keep every replica until its successor is ready (maxUnavailable 0, maxSurge 1)")
    check_disruption_budget(shape, replicas)
    spreads = [c for c in pod.get("topologySpreadConstraints", [])
               if c["topologyKey"] == "kubernetes.io/hostname" and c.get("whenUnsatisfiable") == "DoNotSchedule"
               and selects(c.get("labelSelector", {}).get("matchLabels"), shape.labels)]
    check(spreads, "the pods must be spread over nodes (a DoNotSchedule topologySpreadConstraint "
                   "on kubernetes.io/hostname that selects them)")
    if embedded_bridge is not None:
        for setting in SHARED_BRIDGE_SETTINGS:
            check(bridge.get(setting) == embedded_bridge.get(setting),
                  f"the bridge's {setting} differs from the embedded shape's (deploy/kubernetes/deployment.yaml)")
    if "nats-creds" in settings:
        mounted_file(pod, bridge, settings["nats-creds"], shape.secrets)
    check_nats(shape, settings, nats_values)


def check_stateless(shape, settings):
    """No volume in the JetStream shape may outlive its pod, and none needs to."""
    check(not shape.by_kind.get("PersistentVolumeClaim"), f"{shape.dir} must not create a PersistentVolumeClaim")
    for volume in shape.pod.get("volumes", []):
        check("persistentVolumeClaim" not in volume and "ephemeral" not in volume,
              f"volume {volume['name']}: the JetStream shape keeps nothing on a volume")
    if "data-dir" in settings:
        check(False, "--data-dir is unused on JetStream: leave it out")


def check_disruption_budget(shape, replicas):
    budgets = [b for b in shape.by_kind.get("PodDisruptionBudget", [])
               if selects(b["spec"].get("selector", {}).get("matchLabels"), shape.labels)]
    if not check(budgets, "no PodDisruptionBudget selects the Deployment's pods"):
        return
    spec = budgets[0]["spec"]
    if "minAvailable" in spec:
        minimum = spec["minAvailable"]
        check(isinstance(minimum, int) and 1 <= minimum < replicas,
              f"PodDisruptionBudget minAvailable {minimum} must be a number from 1 to replicas - 1 ({replicas - 1})")
    else:
        most = spec.get("maxUnavailable")
        check(isinstance(most, int) and 1 <= most < replicas,
              f"PodDisruptionBudget maxUnavailable {most} must be a number from 1 to replicas - 1 ({replicas - 1})")


def check_nats(shape, settings, values):
    """The bridge's NATS settings, the NATS chart's values and the NATS NetworkPolicy agree."""
    config = values.get("config", {})
    client_port = config.get("nats", {}).get("port", 4222)
    cluster = config.get("cluster", {})
    jetstream = config.get("jetstream", {})
    file_store = jetstream.get("fileStore", {})
    check(cluster.get("enabled") is True, f"{NATS_VALUES}: config.cluster.enabled must be true")
    cluster_size = cluster.get("replicas", 3)
    check(cluster_size >= 3, f"{NATS_VALUES}: config.cluster.replicas must be at least 3 for an R3 stream")
    check(jetstream.get("enabled") is True, f"{NATS_VALUES}: config.jetstream.enabled must be true")
    check(file_store.get("enabled", True) and file_store.get("pvc", {}).get("enabled", True),
          f"{NATS_VALUES}: the stream needs config.jetstream.fileStore on a PVC")
    check(values.get("podDisruptionBudget", {}).get("enabled", True),
          f"{NATS_VALUES}: podDisruptionBudget.enabled must stay true")
    max_payload = (config.get("merge") or {}).get("max_payload", NATS_DEFAULT_MAX_PAYLOAD)
    check(isinstance(max_payload, int) and max_payload >= EVENT_MESSAGE_BYTES,
          f"{NATS_VALUES}: config.merge.max_payload {max_payload} is under {EVENT_MESSAGE_BYTES} bytes, "
          "so the largest events could never be stored")

    stream_replicas = int(settings.get("nats-replicas", "1"))
    check(stream_replicas in STREAM_REPLICAS and stream_replicas <= cluster_size,
          f"--nats-replicas {stream_replicas} must be 1, 3 or 5 and at most the NATS cluster's {cluster_size}")
    check(stream_replicas >= 3, f"--nats-replicas {stream_replicas}: the scaled-out shape stores on a quorum (3)")
    hosts = set()
    for url in settings["nats-url"].split(","):
        parts = urlsplit(url.strip())
        if check(parts.scheme in ("nats", "tls") and parts.port, f"--nats-url {url}: nats://HOST:PORT or tls://"):
            check(parts.port == client_port, f"--nats-url {url}: not config.nats.port {client_port} of {NATS_VALUES}")
            hosts.add(parts.hostname.split(".")[0])

    store = size_bytes(file_store.get("maxSize") or file_store.get("pvc", {}).get("size", "10Gi"))
    volume = size_bytes(file_store.get("pvc", {}).get("size", "10Gi"))
    check(store is not None and volume is not None and store <= volume,
          f"{NATS_VALUES}: fileStore.maxSize must fit in fileStore.pvc.size")
    if "retention-max-bytes" in settings and store is not None:
        cap = size_bytes(settings["retention-max-bytes"])
        check(cap is not None and cap < store,
              f"--retention-max-bytes {settings['retention-max-bytes']} must be under the NATS store's "
              f"{file_store.get('maxSize')}: every server holds the whole stream")
    check_nats_policy(shape, hosts, client_port, cluster.get("port", 6222))


def check_nats_policy(shape, hosts, client_port, cluster_port):
    """A NetworkPolicy on the chart's NATS pods lets the bridges in on the client port."""
    # The chart names its client Service after the release when the release name contains "nats".
    releases = {host for host in hosts if "nats" in host} or {host.removesuffix("-nats") for host in hosts}
    policies = [p for p in shape.by_kind.get("NetworkPolicy", [])
                if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component") == "nats"]
    if not check(policies, "no NetworkPolicy selects the NATS pods (app.kubernetes.io/component: nats)"):
        return
    policy = policies[0]
    nats_pods = policy["spec"]["podSelector"]["matchLabels"]
    check(nats_pods.get("app.kubernetes.io/instance") in releases and nats_pods.get("app.kubernetes.io/name") == "nats",
          f"the NATS NetworkPolicy selects {nats_pods}, not the pods of the chart's release {sorted(releases)}")

    def admits(selected_labels, port):
        return any(any(p.get("port") == port for p in rule.get("ports", []))
                   and any(selects(peer.get("podSelector", {}).get("matchLabels"), selected_labels)
                           for peer in rule.get("from", []))
                   for rule in policy["spec"].get("ingress", []))

    check(admits(shape.labels, client_port), f"the NATS NetworkPolicy must let the bridge pods in on {client_port}")
    check(admits(nats_pods, cluster_port), f"the NATS NetworkPolicy must let the NATS servers in on {cluster_port}")


def main(deploy_dir, dockerfile_path, jetstream_dir=None):
    with open(dockerfile_path) as f:
        dockerfile = [line.strip() for line in f]
    help_text = serve_help()
    if help_text is None:
        print("BRIDGE_BIN not set: not checking the manifests' flags and variables against `clerk-bridge serve --help`")
    embedded_bridge = check_embedded(Shape(deploy_dir, [deploy_dir]), dockerfile, help_text)
    if jetstream_dir:
        nats_values = load(os.path.join(jetstream_dir, NATS_VALUES))[0]
        shape = Shape(jetstream_dir, [jetstream_dir, deploy_dir])
        check_jetstream(shape, embedded_bridge, dockerfile, help_text, nats_values)


if __name__ == "__main__":
    main(*sys.argv[1:])
    for problem in dict.fromkeys(problems):
        print(f"FAIL {problem}")
    if problems:
        sys.exit(1)
    print("manifests, flags and Dockerfile agree")
