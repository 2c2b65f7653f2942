# Prometheus and Alertmanager from Debian's packages, for the compose stack where no image registry is reachable.
# ENTRYPOINT is Prometheus as in prom/prometheus; the compose CPU override runs Alertmanager from the same image.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager wget \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus /alertmanager && chown nobody:nogroup /prometheus /alertmanager
USER nobody
ENTRYPOINT ["/usr/bin/prometheus"]
