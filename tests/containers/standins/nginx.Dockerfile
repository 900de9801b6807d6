# Test device, never shipped: a stand-in for the nginx image docker-compose.yml names where no
# registry can be reached, built by tests/containers/standins.py from a debootstrapped Debian
# bookworm (BASE) with Debian's nginx-light (1.22; deploy/nginx.conf needs nothing newer). As
# in the real image: logs to the container's stdout and stderr, `nginx -g 'daemon off;'`, and
# SIGQUIT (a graceful stop) for docker stop.
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
