# One image for the controller and the kbmc: `vmbmc controller ...` / `vmbmc kbmc ...`.
# Build: docker build -t vmbmc:dev .
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY vmbmc ./vmbmc
COPY crds ./crds
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim-bookworm
COPY --from=build /install /usr/local
# Non-root; the kbmc binds 10623/UDP and 8443/TCP and the Service maps 623 and 443 onto them,
# so no NET_BIND_SERVICE capability is needed.
RUN useradd --uid 65532 --user-group --no-create-home --shell /usr/sbin/nologin vmbmc
USER 65532:65532
# The root filesystem is read-only in the pods; the kbmc writes its self-signed certificate to /tmp.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
EXPOSE 10623/udp 8443/tcp 8081/tcp
ENTRYPOINT ["vmbmc"]
CMD ["--help"]
