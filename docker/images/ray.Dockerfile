# Ray (CPU) for the compose stack on a machine without an image registry: Debian's python3 + a venv from PyPI.
# Built by `harness docker build` FROM a debootstrapped Debian base; `ca.pem` is the build host's CA bundle,
# handed in the build context (pip needs it where TLS is intercepted) and deleted in the same layer.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates procps \
 && rm -rf /var/lib/apt/lists/*
ARG RAY_VERSION
ARG PIP_EXTRA=""
COPY ca.pem /tmp/build-ca.pem
RUN python3 -m venv /opt/ray \
 && /opt/ray/bin/pip install -q --no-cache-dir --cert /tmp/build-ca.pem --disable-pip-version-check \
      "ray[serve]==${RAY_VERSION}" ${PIP_EXTRA} \
 && rm -f /tmp/build-ca.pem
# The compose file runs Ray as uid 1000 / gid 100 (the upstream rayproject images' `ray` user).
RUN useradd --uid 1000 --gid 100 --create-home --shell /bin/bash ray && mkdir -p /home/ray/app && chown -R 1000:100 /home/ray
ENV PATH=/opt/ray/bin:$PATH
USER 1000:100
WORKDIR /home/ray
