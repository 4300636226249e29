# One image for the controller and the kbmc: `vmbmc controller ...` / `vmbmc kbmc ...`.
# Build: docker build -t vmbmc:dev .   (deploy/ names `vmbmc`; its kustomization tags it `dev`)
#
# Stage 1 builds the wheel exactly as `pip wheel .` does anywhere: setup.py copies crds/ and deploy/
# into it (vmbmc/_manifests). Stage 2 installs that wheel with its runtime dependencies only, at the
# versions constraints.txt pins (no test or bench extras, no compiler, no source tree), and runs as a
# non-root user. The development distribution (devcluster/: the emulator and `vmbmc demo`) is never
# copied in.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY vmbmc ./vmbmc
COPY crds ./crds
COPY deploy ./deploy
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
COPY --from=build /wheels /wheels
# The exact versions CI tested (constraints.txt); pyproject.toml states only compatible ranges.
COPY constraints.txt /wheels/
RUN pip install --no-cache-dir -c /wheels/constraints.txt /wheels/vmbmc-*.whl && rm -rf /wheels
# Non-root, by number (the kubelet checks runAsNonRoot against a numeric UID); the kbmc binds
# 10623/UDP and 8443/TCP and the Service maps 623 and 443 onto them, so no capability is needed.
RUN useradd --uid 65532 --user-group --no-create-home --shell /usr/sbin/nologin vmbmc
USER 65532:65532
# The root filesystem is read-only in the pods; the kbmc writes its self-signed certificate to /tmp
# (an emptyDir in the pod).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
EXPOSE 10623/udp 8443/tcp 8081/tcp 8080/tcp
ENTRYPOINT ["vmbmc"]
CMD ["--help"]
