# The operator's image, as the chart runs it: `docker build -t continuum-operator:0.1.0 .` at
# the repository's root. The chart's container gives only `args` (continuum operator run ...),
# which run as the command: the image has no ENTRYPOINT.
#
# It runs as uid 65532 (distroless' nonroot), numeric so that a kubelet can check runAsNonRoot,
# with a read-only root filesystem: the chart mounts an emptyDir at /tmp, the one place it
# writes (the Kubernetes client's certificate files, Python's temporary files), and HOME is
# there too. The operator asks the user database for nothing (its Kopf identity is the pod's
# name), so the uid needs no passwd entry.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
# continuum/ holds symlinks to the top-level folders (pyproject, [tool.setuptools]).
COPY continuum ./continuum
COPY operator ./operator
COPY schedulers ./schedulers
COPY workloads ./workloads
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && pip install --no-cache-dir --prefix /install /wheels/*.whl

FROM python:3.11-slim
COPY --from=build /install /usr/local
ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
CMD ["continuum", "operator", "run", "--help"]
