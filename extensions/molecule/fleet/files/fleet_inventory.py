"""Write the fleet's inventories from lab/tracelab's: the first for the main rollout
(fleet-a's first 14 aliases, fleet-b, fleet-gone), the second for the failure-budget
run (fleet-a's alias 15 as the canary, fleet-gone, then aliases 16 and 17).

fleet-gone is 127.0.0.1 on a port nothing listens on: a host that is down. Every host
gets SSH keepalives (5 s, 3 missed), so a host that stops answering in the middle of a
task (fleet-b, paused) is unreachable within ~15 s instead of stalling the play.

usage: fleet_inventory.py ALIASES_YAML FLEET_B_YAML OUT_MAIN OUT_BUDGET
"""

import sys

import yaml

KEEPALIVE = " -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -o ConnectTimeout=10"


def hosts_of(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)["all"]["children"]["tracelab"]["hosts"]


def keepalive(variables: dict) -> dict:
    return dict(variables, ansible_ssh_common_args=variables["ansible_ssh_common_args"] + KEEPALIVE)


def write(path: str, hosts: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump({"all": {"children": {"fleet": {"hosts": hosts}}}}, handle, sort_keys=False)


def main() -> None:
    aliases, fleet_b, out_main, out_budget = sys.argv[1:5]
    alias_hosts = hosts_of(aliases)
    b_vars = hosts_of(fleet_b)["fleet-b"]
    gone = keepalive(dict(b_vars, ansible_port=9, session_name="fleet-gone", session_instance="fleet-gone"))
    b = keepalive(dict(b_vars, session_name="fleet-b", session_instance="fleet-b"))
    a = {name: keepalive(variables) for name, variables in alias_hosts.items()}
    # Batches in inventory order: [fleet-a-1], [fleet-gone, fleet-b, fleet-a-2..7], [fleet-a-8..14].
    main_hosts = {"fleet-a-1": a["fleet-a-1"], "fleet-gone": gone, "fleet-b": b}
    main_hosts.update(("fleet-a-%d" % i, a["fleet-a-%d" % i]) for i in range(2, 15))
    write(out_main, main_hosts)
    write(
        out_budget,
        {
            "fleet-a-15": a["fleet-a-15"],
            "fleet-gone": gone,
            "fleet-a-16": a["fleet-a-16"],
            "fleet-a-17": a["fleet-a-17"],
        },
    )


if __name__ == "__main__":
    main()
