#!/bin/sh
# OpenMPI remote-shell agent for tests (`--mca plm_rsh_agent tests/netns_rsh.sh`): "ssh" into a
# network-namespace host of tests/netns.py. OpenMPI calls `AGENT [OPTIONS] HOST COMMAND...`, as
# it would call ssh; HOST is mapped to its namespace by COSIM_NETNS_HOSTS ("IP=NAMESPACE,..."),
# which the agent inherits from mpiexec, and COMMAND (a remote shell's command line, orted) runs
# there under sh. Namespaces share the file system, so the command finds the same files.
while [ $# -gt 0 ]; do
    case "$1" in -*) shift ;; *) break ;; esac
done
host=$1
shift
ns=
for pair in $(echo "${COSIM_NETNS_HOSTS:-}" | tr ',' ' '); do
    [ "${pair%%=*}" = "$host" ] && ns=${pair#*=}
done
if [ -z "$ns" ]; then
    echo "netns_rsh: host $host is not in COSIM_NETNS_HOSTS (${COSIM_NETNS_HOSTS:-unset})" >&2
    exit 255
fi
exec ip netns exec "$ns" sh -c "$*"
