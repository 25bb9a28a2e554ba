"""The kind backend: flow runs as Kubernetes Jobs on a kind cluster.

``cluster`` (creating or adopting a kind cluster, the interlock that refuses other contexts,
cleanup of abandoned ones), ``kube`` (manifests, pod and node faults: delete, evict, drain,
node loss, CPU limits; and the evidence Kubernetes keeps), ``system`` (the server beside the
cluster, the Kubernetes worker, deployments, the fault mapping).
"""
