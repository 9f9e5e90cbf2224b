"""The Ray cluster a sweep runs on: connect without hanging, refuse what no node can run, and
find the nodes that cannot see the sweep's folder.

* :func:`connect` — ``ray.init`` on ``address`` that fails within ``timeout`` seconds with
  one line naming the address and the likely cause (nothing listening there; the cluster's
  token authentication), instead of Ray's endless reconnection warnings;
* :func:`check_resources` — a trial that asks for more CPUs or GPUs than any node has would
  wait forever at 0 %; this refuses it before any trial starts, naming the largest node;
* :func:`nodes_missing` — the nodes on which a marker file the driver wrote is not visible:
  they do not share the sweep's folder with the driver.
"""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from knockoff_env.errors import ConfigError

TOKEN = ("run the sweep with RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token "
         "(`ray get-auth-token` on the head prints it)")


def connect(ray, address: str, timeout: float = 10.0) -> None:
    """``ray.init(address=...)``, or a :class:`ConfigError` within about ``timeout`` seconds."""
    host_port = _host_port(address)
    if host_port is not None:
        try:
            socket.create_connection(host_port, timeout=timeout).close()
        except OSError as err:
            raise ConfigError(f"no Ray cluster answers at {address} ({err.strerror or err})",
                              "start one (`ray start --head` on the head node) or fix --address; "
                              "leave --address out to run on this machine") from err
    saved = os.environ.get("RAY_gcs_server_port_wait_time_s")
    os.environ["RAY_gcs_server_port_wait_time_s"] = str(max(1, round(timeout)))  # Ray's own retries: ~1 s each
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except ConnectionError as err:
        if "Auth" in _chain(err) or "Unauthenticated" in _chain(err):
            raise ConfigError(f"the Ray cluster at {address} refused this driver's authentication token "
                              "(the cluster uses token authentication)", TOKEN) from err
        raise ConfigError(f"cannot join a Ray cluster at {address}: {err}",
                          "check that a Ray cluster of this Ray version runs there (`ray status` on the head); "
                          f"if it uses token authentication, {TOKEN}") from err
    finally:
        if saved is None:
            os.environ.pop("RAY_gcs_server_port_wait_time_s", None)
        else:
            os.environ["RAY_gcs_server_port_wait_time_s"] = saved


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``host:port`` or ``ray://host:port``; None for ``auto`` and the like."""
    text = address.removeprefix("ray://")
    host, _, port = text.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


def _chain(err: BaseException) -> str:
    """The messages of ``err`` and everything it was raised from."""
    texts = []
    while err is not None:
        texts.append(f"{type(err).__name__}: {err}")
        err = err.__cause__ or err.__context__
    return " | ".join(texts)


def alive_nodes(ray) -> list[dict]:
    """The cluster's live nodes as ``{"node": id, "host": address, "CPU": n, "GPU": n}``."""
    return [{"node": n["NodeID"], "host": n.get("NodeManagerHostname") or n["NodeManagerAddress"],
             "CPU": float(n["Resources"].get("CPU", 0)), "GPU": float(n["Resources"].get("GPU", 0))}
            for n in ray.nodes() if n.get("Alive")]


def check_resources(nodes: list[dict], cpus: float, gpus: float, where: str) -> None:
    """Refuse a trial reservation (``cpus``, ``gpus``) that no single node in ``nodes`` can give."""
    if any(n["CPU"] >= cpus and n["GPU"] >= gpus for n in nodes):
        return
    largest = max(nodes, key=lambda n: (n["GPU"] >= gpus, n["CPU"], n["GPU"]), default=None)
    has = (f"the largest node ({largest['host']}) has {largest['CPU']:g} CPUs and {largest['GPU']:g} GPUs"
           if largest else "it has no live node")
    raise ConfigError(f"each trial asks for {cpus:g} CPUs and {gpus:g} GPUs, but {has} on {where}: no trial "
                      "could ever start",
                      "lower --cpus-per-trial / --gpus-per-trial, or add a node that has them")


def nodes_missing(ray, folder: Path, nodes: list[dict], timeout: float = 60.0) -> list[dict]:
    """The nodes that do not see ``folder``: a task pinned to each looks for a marker file the driver
    wrote there. Each returned node says ``why``: it does not see the marker, or the task failed (this
    package missing or different there) or did not answer within ``timeout``."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    marker = folder / f".marker-{uuid.uuid4().hex}"
    marker.write_text("written by the sweep's driver; each node looks for it\n")
    try:
        look = ray.remote(_sees)
        refs = {look.options(num_cpus=0, max_retries=0,
                             scheduling_strategy=NodeAffinitySchedulingStrategy(n["node"], soft=False))
                .remote(str(marker)): n for n in nodes}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
        answers = {refs[r]["node"]: _answer(ray, r, folder) for r in ready}
        late = f"did not answer within {timeout:g} s"
        return [{**n, "why": answers.get(n["node"], late)} for n in nodes if answers.get(n["node"]) != "sees"]
    finally:
        marker.unlink(missing_ok=True)


def _sees(path: str) -> bool:
    return Path(path).is_file()


def _answer(ray, ref, folder: Path) -> str:
    try:
        return "sees" if ray.get(ref) else f"does not see {folder}"
    except ray.exceptions.RayError as err:
        last = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        return f"could not run the check ({last}): is this version of the package installed there?"
