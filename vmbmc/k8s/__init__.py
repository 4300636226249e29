"""The generic Kubernetes client layer: kubeconfig, HTTP, API calls, watches, Events, status patches.

It knows nothing of KubeVirt, BMCs or the controller; everything above it imports it, it imports none of them.
"""
