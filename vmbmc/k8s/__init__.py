"""The generic Kubernetes client layer on lightkube and httpx2 (docs/k8s-client.md): configuration, API
calls and what may be sent again, watches, Events, status patches.

It knows nothing of KubeVirt, BMCs or the controller; everything above it imports it, it imports none of them.
"""
